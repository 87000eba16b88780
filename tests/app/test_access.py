"""The token guard in front of a whole dashboard app (pages, Dash callbacks, API)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.support.segments import metrics_segment
from trainlight.app.access import COOKIE, cookie_value, is_authorised
from trainlight.app.factory import create_app
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.schema import StoreLayout, write_atomically

TOKEN = "tok-'\"/&<>"  # quotes and markup must not break headers, cookies or the refusal page


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(StoreLayout.resolve(tmp_path))
    opened.layout.run_inbox("r-1").mkdir(parents=True)
    segment = metrics_segment("r-1", 0, [(0, "x", 1.0)])
    write_atomically(opened.layout.segment_path("r-1", 0), segment)
    Ingester(opened).ingest_pending()
    yield opened
    opened.close()


def client_for(store: Store, token: str | None) -> FlaskClient:
    return create_app(store, token).server.test_client()


def test_without_a_token_everything_is_open(store: Store) -> None:
    client = client_for(store, None)
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/runs").status_code == 200


def test_pages_api_and_callbacks_are_refused_without_the_token(store: Store) -> None:
    client = client_for(store, TOKEN)
    page = client.get("/run/r-1")
    assert page.status_code == 401
    assert b"needs its token" in page.data
    assert client.get("/api/v1/runs").status_code == 401
    assert client.post("/_dash-update-component", json={}).status_code == 401
    assert client.post("/api/v1/runs/r-1/stop", headers={"X-Trainlight": "1"}).status_code == 401
    assert not store.layout.control_path("r-1").exists()


def test_health_check_and_static_files_stay_open(store: Store) -> None:
    client = client_for(store, TOKEN)
    assert client.get("/healthz").get_json() == {"ok": True}
    assert client.get("/assets/style.css").status_code == 200


def test_token_in_the_address_sets_a_cookie_once_and_is_dropped_from_the_address(
    store: Store,
) -> None:
    client = client_for(store, TOKEN)
    first = client.get("/run/r-1", query_string={"token": TOKEN, "smooth": "0.5"})
    assert first.status_code == 303
    assert first.headers["Location"].endswith("/run/r-1?smooth=0.5")
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie  # a digest, not the token itself
    assert client.get("/run/r-1").status_code == 200
    assert client.get("/api/v1/runs").status_code == 200


def test_a_wrong_token_in_the_address_sets_no_cookie(store: Store) -> None:
    client = client_for(store, TOKEN)
    refused = client.get("/", query_string={"token": "guess"})
    assert refused.status_code == 401
    assert "Set-Cookie" not in refused.headers
    assert client.get("/").status_code == 401


def test_bearer_header_and_cookie_digest_are_the_two_proofs() -> None:
    assert is_authorised(TOKEN, f"Bearer {TOKEN}", None)
    assert is_authorised(TOKEN, "", cookie_value(TOKEN))
    assert not is_authorised(TOKEN, "Bearer nope", cookie_value("other"))
    assert not is_authorised(TOKEN, TOKEN, None)  # no scheme
    assert COOKIE == "trainlight_token"


def test_only_the_exact_health_path_is_open(store: Store) -> None:
    client = client_for(store, TOKEN)
    for path in ("/healthzX", "/healthz/", "/healthz.html", "/_favicon.icoX"):
        reply = client.get(path)
        assert reply.status_code == 401, path
        assert b"_dash-config" not in reply.data  # not the page shell
    assert client_for(store, None).get("/healthz").get_json() == {"ok": True}


def _failing_client(store: Store, token: str | None) -> FlaskClient:
    server = create_app(store, token).server

    @server.route("/api/v1/boom")
    def boom() -> str:
        raise ValueError("deep\nfailure")

    return server.test_client()


def _failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_unauthenticated_failure_is_logged_in_one_line(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    client = _failing_client(store, None)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert client.get("/api/v1/boom").status_code == 500
    records = _failures(caplog)
    assert len(records) == 3
    for record in records:
        text = record.getMessage()
        assert record.exc_info is None and "\n" not in text
        assert "ValueError" in text and "/api/v1/boom" in text and "test_access.py" in text


def test_an_authenticated_failure_keeps_its_traceback(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    client = _failing_client(store, TOKEN)
    with caplog.at_level(logging.INFO):
        assert client.get("/api/v1/boom").status_code == 401  # refused before it can fail
        reply = client.get("/api/v1/boom", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 500
    (record,) = _failures(caplog)
    assert record.exc_info is not None and record.exc_info[0] is ValueError
