"""Cross-site pages and DNS rebinding against a real `trainlight serve` (127.0.0.1, bounded).

The attacks are what a browser lets another page send: a form or `no-cors` fetch (text/plain or
form body, no custom header) from another port of the same host, with and without a token cookie,
and any request under a foreign Host name. They must be refused and change nothing, while the
collector (Bearer or X-Trainlight, parquet body) and a JSON request from the page itself still work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.segments import metrics_segment
from tests.support.server import LiveServer, start_server, stop_server
from trainlight.app.intent import HostPolicy, host_name
from trainlight.collectors.http_sink import SEGMENT_CONTENT_TYPE

TOKEN = "intent-token"
RUN = "r-1"


def _serve(tmp_path: Path, *args: str) -> Iterator[LiveServer]:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    server = start_server(store_dir, tmp_path / "serve.log", extra_args=args)
    try:
        if args:
            server.http.headers["Authorization"] = f"Bearer {TOKEN}"
        ingest = server.http.post(
            server.url("api/v1/ingest"),
            params={"run_id": RUN, "seq": "0"},
            data=metrics_segment(RUN, 0, [(0, "loss", 1.0)]),
            headers={"Content-Type": SEGMENT_CONTENT_TYPE, "X-Trainlight": "1"},
            timeout=10,
        )
        assert ingest.status_code == 202, ingest.text
        server.wait_for(lambda: server.run(RUN), 30, "the first run ingested")
        server.http.headers.pop("Authorization", None)
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from _serve(tmp_path)


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from _serve(tmp_path, "--token", TOKEN)


def _cross_site(server: LiveServer) -> dict[str, str]:
    """What a page on another port of 127.0.0.1 sends with a form or a no-cors fetch."""
    port = int(server.base_url.rstrip("/").rsplit(":", 1)[1])
    return {"Origin": f"http://127.0.0.1:{port + 1}", "Sec-Fetch-Site": "same-site"}


def _attack(server: LiveServer, session: requests.Session) -> list[int]:
    """Stop and ingest the way another page could; the answers' statuses."""
    statuses = []
    for extra in (_cross_site(server), {}):  # with browser headers, and as an old browser/tool
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            headers = {**extra, "Content-Type": content_type}
            stop = session.post(
                server.url(f"api/v1/runs/{RUN}/stop"), data="reason=x", headers=headers, timeout=10
            )
            forged = metrics_segment("evil-1", 0, [(0, "loss", 6.0)])
            ingest = session.post(
                server.url("api/v1/ingest"),
                params={"run_id": "evil-1", "seq": "0"},
                data=forged,
                headers=headers,
                timeout=10,
            )
            statuses += [stop.status_code, ingest.status_code]
    return statuses


def _nothing_changed(server: LiveServer) -> None:
    run = server.run(RUN)
    assert run is not None and run["stop_requested"] is False
    assert not (server.store_dir / "inbox" / "evil-1").exists()
    assert [r["run_id"] for r in server.runs()] == [RUN]


def test_cross_site_forms_cannot_stop_or_ingest_without_a_token(open_server: LiveServer) -> None:
    statuses = _attack(open_server, open_server.http)
    assert set(statuses) <= {403, 415}, statuses
    _nothing_changed(open_server)


def test_cross_site_forms_cannot_ride_the_token_cookie(token_server: LiveServer) -> None:
    browser = requests.Session()
    browser.trust_env = False
    login = browser.get(token_server.url(f"?token={TOKEN}"), allow_redirects=False, timeout=10)
    assert login.status_code == 303 and browser.cookies
    statuses = _attack(token_server, browser)
    assert set(statuses) <= {403, 415}, statuses
    token_server.http.headers["Authorization"] = f"Bearer {TOKEN}"
    _nothing_changed(token_server)
    # The same cookie with the page's own JSON request (what Dash sends) is accepted.
    own = {"Origin": token_server.base_url.rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    reply = browser.post(
        token_server.url(f"api/v1/runs/{RUN}/stop"), json={"reason": "mine"}, headers=own
    )
    assert reply.status_code == 200, reply.text
    assert token_server.http.get(token_server.url(f"api/v1/runs/{RUN}/control")).json()["stop"]


def test_json_from_another_origin_is_refused_and_own_json_accepted(
    open_server: LiveServer,
) -> None:
    url = open_server.url(f"api/v1/runs/{RUN}/stop")
    foreign = open_server.http.post(url, json={}, headers={"Origin": "null"}, timeout=10)
    assert foreign.status_code == 403
    _nothing_changed(open_server)
    intent = open_server.http.post(url, headers={"X-Trainlight": "1"}, timeout=10)
    assert intent.status_code == 200, intent.text


@pytest.mark.parametrize("host", ["evil.example:80", "rebind.attacker.test", "a b", "[::1"])
def test_a_foreign_host_name_is_refused_before_anything_runs(
    open_server: LiveServer, host: str
) -> None:
    for path in ("", "api/v1/runs", "healthz"):
        reply = open_server.http.get(open_server.url(path), headers={"Host": host}, timeout=10)
        assert reply.status_code in (400, 421), (path, reply.status_code)
    stop = open_server.http.post(
        open_server.url(f"api/v1/runs/{RUN}/stop"),
        json={},
        headers={"Host": host, "X-Trainlight": "1"},
        timeout=10,
    )
    assert stop.status_code in (400, 421)
    _nothing_changed(open_server)
    assert open_server.http.get(open_server.url("healthz"), headers={"Host": "localhost"}).ok


def test_host_policy_names() -> None:
    policy = HostPolicy.serving("127.0.0.1", ["https://lights.example.org/"])
    assert policy.allows_host("localhost:8050") and policy.allows_host("[::1]:8050")
    assert policy.allows_host("10.0.0.7") and policy.allows_host("LIGHTS.example.org")
    assert not policy.allows_host("evil.example") and not policy.allows_host("")
    assert not policy.allows_host("localhost:x")
    assert policy.allows_origin("https://lights.example.org", "127.0.0.1:8050")
    assert policy.allows_origin("http://localhost:8050", "localhost:8050")
    assert not policy.allows_origin("http://localhost:8051", "localhost:8050")
    assert not policy.allows_origin("null", "localhost:8050")
    assert host_name("[::1]:8050") == "::1"
    wildcard = HostPolicy.serving("0.0.0.0")
    assert len(wildcard.names) >= 2  # the machine's own names, for a LAN or container bind
