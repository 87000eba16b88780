"""The HTTP API through Flask's test client, against a real DuckDB store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.segments import metrics_segment
from trainlight.app.access import install_token_guard
from trainlight.app.api import create_api
from trainlight.app.intake import IntakeSettings
from trainlight.app.intent import INTENT_HEADER, HostPolicy, install_intent_guard
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.http_sink import SEGMENT_CONTENT_TYPE
from trainlight.collectors.schema import StoreLayout

TOKEN = "s3cret"
INTENT = {INTENT_HEADER: "1"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(StoreLayout.resolve(tmp_path))
    yield opened
    opened.close()


def client_for(store: Store, token: str | None = None, max_bytes: int = 1 << 20) -> FlaskClient:
    app = Flask(__name__)
    install_intent_guard(app, HostPolicy.serving())
    install_token_guard(app, token)
    app.register_blueprint(
        create_api(store, timedelta(seconds=60), IntakeSettings(max_segment_bytes=max_bytes))
    )
    return app.test_client()


@pytest.fixture
def client(store: Store) -> FlaskClient:
    return client_for(store)


def post_segment(client: FlaskClient, run_id: str, seq: int, payload: bytes, **kw: object):
    return client.post(
        f"/api/v1/ingest?run_id={run_id}&seq={seq}",
        data=payload,
        content_type="application/vnd.apache.parquet",
        **kw,
    )


def test_ingest_then_runs_lists_the_run_with_nan_spelled_out(
    client: FlaskClient, store: Store
) -> None:
    reply = post_segment(
        client,
        "r-1",
        0,
        metrics_segment(
            "r-1", 0, [(0, "loss", float("nan")), (3, "acc", 0.5)], name='it\'s "quoted"'
        ),
    )
    assert reply.status_code == 202
    assert reply.get_json() == {"run_id": "r-1", "seq": 0, "stop": False, "reason": ""}
    Ingester(store).ingest_pending()
    runs = json.loads(client.get("/api/v1/runs").data)["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert (run["run_id"], run["name"], run["status"], run["last_step"]) == (
        "r-1",
        'it\'s "quoted"',
        "running",
        3,
    )
    assert run["last_values"] == {"loss": "NaN", "acc": 0.5}
    assert set(run) >= {"project", "group", "updated_at", "health"}


@pytest.mark.parametrize(
    ("query", "payload", "status", "message"),
    [
        ("run_id=../etc&seq=0", b"x", 400, "invalid or missing run_id"),
        ("run_id=r-1&seq=-1", b"x", 400, "seq must be a non-negative integer"),
        ("run_id=r-1", b"x", 400, "seq must be"),
        ("run_id=r-1&seq=0", b"not parquet", 422, "malformed segment"),
        ("run_id=r-2&seq=0", None, 422, "do not match"),
    ],
)
def test_malformed_ingest_gets_a_4xx_naming_the_problem_and_changes_nothing(
    client: FlaskClient,
    store: Store,
    query: str,
    payload: bytes | None,
    status: int,
    message: str,
) -> None:
    body = payload if payload is not None else metrics_segment("r-1", 0, [(0, "x", 1.0)])
    reply = client.post(f"/api/v1/ingest?{query}", data=body, content_type=SEGMENT_CONTENT_TYPE)
    assert reply.status_code == status
    assert message in reply.get_json()["error"]
    assert not list(store.layout.inbox.glob("*/*"))


def test_oversized_segment_is_refused_with_413(store: Store) -> None:
    client = client_for(store, max_bytes=1000)
    reply = client.post(
        "/api/v1/ingest?run_id=r-1&seq=0", data=b"x" * 1001, content_type=SEGMENT_CONTENT_TYPE
    )
    assert reply.status_code == 413
    assert "larger than 1000 bytes" in reply.get_json()["error"]


def test_stop_unknown_run_is_404_and_known_run_publishes_control(
    client: FlaskClient, store: Store
) -> None:
    assert client.post("/api/v1/runs/nope-1/stop", headers=INTENT).status_code == 404
    post_segment(client, "r-1", 0, metrics_segment("r-1", 0, []))
    Ingester(store).ingest_pending()
    assert client.get("/api/v1/runs/r-1/control").get_json()["stop"] is False
    reply = client.post("/api/v1/runs/r-1/stop", json={"reason": "runaway mean"})
    assert reply.status_code == 200
    assert client.get("/api/v1/runs/r-1/control").get_json() == {
        "run_id": "r-1",
        "stop": True,
        "reason": "runaway mean",
    }
    control_file = store.layout.control_path("r-1")
    assert json.loads(control_file.read_text()) == {"stop": True, "reason": "runaway mean"}
    assert client.get("/api/v1/runs/r-1").get_json()["stop_requested"] is True


def test_unknown_run_detail_is_404_and_bad_id_400(client: FlaskClient) -> None:
    assert client.get("/api/v1/runs/missing-1").status_code == 404
    assert client.get("/api/v1/runs/..%2Fetc").status_code in (400, 404)


def test_with_a_token_every_route_needs_it_and_a_refusal_changes_nothing(store: Store) -> None:
    client = client_for(store, TOKEN)
    payload = metrics_segment("r-1", 0, [(0, "x", 1.0)])
    assert post_segment(client, "r-1", 0, payload).status_code == 401
    assert (
        post_segment(
            client, "r-1", 0, payload, headers={"Authorization": "Bearer wrong"}
        ).status_code
        == 401
    )
    assert not list(store.layout.inbox.glob("*/*"))
    ok = post_segment(client, "r-1", 0, payload, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 202
    Ingester(store).ingest_pending()
    assert client.post("/api/v1/runs/r-1/stop", headers=INTENT).status_code == 401
    assert client.get("/api/v1/runs").status_code == 401
    authorised = {"Authorization": f"Bearer {TOKEN}"}
    control = client.get("/api/v1/runs/r-1/control", headers=authorised).get_json()
    assert control["stop"] is False
    assert not store.layout.control_path("r-1").exists()


def test_an_unreadable_control_file_still_gets_the_segment_its_202(
    client: FlaskClient, store: Store
) -> None:
    """The segment is durable before the stop state is read: a broken control file must not
    turn the acknowledgement into a 500 (the collector would resend what is already stored)."""
    store.layout.control_path("r-1").mkdir(parents=True)  # read_bytes() fails: a directory
    reply = post_segment(
        client, "r-1", 0, metrics_segment("r-1", 0, [(0, "loss", 1.0)]), headers=INTENT
    )
    assert reply.status_code == 202
    assert (reply.get_json()["stop"], reply.get_json()["reason"]) == (False, "")
