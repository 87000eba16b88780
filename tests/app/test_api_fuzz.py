"""2,500 malformed requests against the whole app: every answer a 4xx (never a 5xx), and the
store stays consistent: what was acknowledged is ingested exactly once, nothing else gets in."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.segments import metrics_segment
from trainlight.app.factory import create_app
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.schema import StoreLayout

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FUZZ = settings(
    deadline=None,
    database=None,  # no example files in the working tree; each CI run explores afresh
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
RUN_IDS = st.one_of(
    st.sampled_from(["ok-1", "ok-2", "", "..", "../etc", "a/b", "a b", "x" * 300, "é-1", "%2e%2e"]),
    st.text(max_size=40),
)
SEQS = st.one_of(
    st.sampled_from(["0", "1", "-1", "1e3", "²", "0x10", "9" * 30, ""]),
    st.text(max_size=12),
    st.none(),
)


@pytest.fixture(scope="module")
def app_and_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlaskClient, Store]]:
    store = Store(StoreLayout.resolve(tmp_path_factory.mktemp("fuzz")))
    yield create_app(store, TOKEN).server.test_client(), store
    store.close()


def _corrupt(payload: bytes, rng: random.Random, mode: int) -> bytes:
    data = bytearray(payload)
    if mode == 0:  # truncated
        return bytes(data[: rng.randrange(len(data))])
    if mode == 1:  # a few flipped bytes anywhere (header, footer, pages)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    return rng.randbytes(rng.randrange(2048))  # noise


@functools.cache
def valid_segments() -> tuple[bytes, ...]:
    """Valid segments built once (encoding one costs more than a request): hostile names,
    NaN/Inf/huge values; all with seq 5."""
    values = [0.5, math.nan, math.inf, -math.inf, 1e308, -0.0]
    names = ["", "q'uote\"s", "../../etc", "'; DROP TABLE runs; --", "💥"]
    return tuple(
        metrics_segment(run_id, 5, [(i, "loss", v) for i, v in enumerate(values[k:])], name=name)
        for k, (run_id, name) in enumerate(
            (r, n) for r in ("ok-1", "ok-2", "other-9") for n in names[:2]
        )
    )


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Mostly broken segments, some valid segments whose header disagrees with the URL."""
    valid = draw(st.sampled_from(valid_segments()))
    mode = draw(st.integers(0, 3))
    if mode == 3:
        return valid
    return _corrupt(valid, random.Random(draw(st.integers(0, 2**32))), mode)


@settings(FUZZ, max_examples=1_500)
@given(run_id=RUN_IDS, seq=SEQS, body=bodies(), with_token=st.booleans())
def test_malformed_ingest_requests_get_a_4xx_and_store_nothing(
    app_and_store: tuple[FlaskClient, Store],
    run_id: str,
    seq: str | None,
    body: bytes,
    with_token: bool,
) -> None:
    client, _store = app_and_store
    query = {"run_id": run_id} | ({} if seq is None else {"seq": seq})
    reply = client.post(
        "/api/v1/ingest",
        query_string=query,
        data=body,
        headers=AUTH if with_token else {},
        content_type="application/octet-stream",
    )
    # Seq 5 is the only seq a valid body carries; run ids are ok-1/ok-2/other-9.
    could_be_valid = with_token and seq == "5" and run_id in ("ok-1", "ok-2", "other-9")
    if reply.status_code == 202:
        assert could_be_valid
    else:
        assert 400 <= reply.status_code < 500, (reply.status_code, reply.data[:200])
        assert reply.is_json and reply.get_json()["error"]


ROUTE_SUFFIXES = st.sampled_from(["", "/stop", "/control", "/stop/x", "/../../etc/passwd"])


@settings(FUZZ, max_examples=1_000)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    run_id=RUN_IDS,
    suffix=ROUTE_SUFFIXES,
    body=st.one_of(
        st.none(),
        st.binary(max_size=200),
        st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=20), st.integers())),
    ),
    with_token=st.booleans(),
)
def test_malformed_run_requests_never_fail_the_server(
    app_and_store: tuple[FlaskClient, Store],
    method: str,
    run_id: str,
    suffix: str,
    body: object,
    with_token: bool,
) -> None:
    client, _store = app_and_store
    # The intent header passes the cross-site guard (tests/app/test_intent.py) to reach the routes.
    headers = {**(AUTH if with_token else {}), "X-Trainlight": "1"}
    kwargs: dict[str, object] = {"headers": headers}
    if isinstance(body, bytes):
        kwargs["data"] = body
    elif body is not None:
        kwargs["json"] = body
    reply = client.open(f"/api/v1/runs/{run_id}{suffix}", method=method, **kwargs)
    assert reply.status_code < 500, (method, run_id, suffix, reply.data[:200])
    if not with_token:
        assert reply.status_code == 401


def test_after_the_fuzz_the_store_is_consistent_and_still_serves(
    app_and_store: tuple[FlaskClient, Store],
) -> None:
    """Runs after the two fuzz tests (file order): everything acknowledged ingests exactly once."""
    client, store = app_and_store
    Ingester(store).ingest_pending()
    assert not list(store.layout.inbox.glob("*/*.parquet")), "inbox drained"
    with store.read() as cur:
        duplicated = cur.execute(
            "SELECT run_id, seq FROM segments GROUP BY ALL HAVING count(*) > 1"
        ).fetchall()
        run_ids = {r[0] for r in cur.execute("SELECT run_id FROM runs").fetchall()}
    assert duplicated == []
    assert run_ids <= {"ok-1", "ok-2", "other-9"}
    fresh = metrics_segment("fresh-1", 0, [(0, "loss", 0.25)], name="after 'the' fuzz")
    accepted = client.post(
        "/api/v1/ingest",
        query_string={"run_id": "fresh-1", "seq": "0"},
        data=fresh,
        headers=AUTH,
        content_type="application/octet-stream",
    )
    assert accepted.status_code == 202
    Ingester(store).ingest_pending()
    detail = client.get("/api/v1/runs/fresh-1", headers=AUTH).get_json()
    assert detail["name"] == "after 'the' fuzz"
    assert detail["last_values"]["loss"] == 0.25
