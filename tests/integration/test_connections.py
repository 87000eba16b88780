"""Attacks on the connection layer of a real `trainlight serve` on 127.0.0.1 (issue 13, 1 and 5).

Thousands of idle sockets must not kill the server (waitress's select() loop died at fd 1024), and
with a token set, a request body is never read, let alone spooled to disk, before the request is
authenticated: the 401 comes back while the client is still sending.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.segments import metrics_segment
from tests.support.server import LiveServer, start_server, stop_server
from trainlight.app.access import COOKIE, cookie_value

IDLE_CONNECTIONS = 3000
TOKEN = "s3cret-token"
CHUNK = b"\0" * 65536


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[LiveServer]:
    store = tmp_path / "store"
    store.mkdir()
    server = start_server(store, tmp_path / "serve.log")
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def token_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """A server with a token whose temporary files (waitress's body spool) go to tmp_path/spool."""
    store, spool = tmp_path / "store", tmp_path / "spool"
    store.mkdir()
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    server = start_server(store, tmp_path / "serve.log", extra_args=("--token", TOKEN))
    try:
        yield server
    finally:
        stop_server(server)


def address(server: LiveServer) -> tuple[str, int]:
    host, _, port = server.base_url.removeprefix("http://").rstrip("/").partition(":")
    return host, int(port)


def held_descriptors(server: LiveServer) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def spooled_files(server: LiveServer, spool: Path) -> list[str]:
    """Files under `spool` that the server holds open (spooled bodies are unlinked at once)."""
    fd_dir = Path(f"/proc/{server.process.pid}/fd")
    held = []
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if target.startswith(str(spool)):
            held.append(target)
    return held + [p.name for p in spool.iterdir()]


def test_thousands_of_idle_connections_leave_the_server_answering(open_server: LiveServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_CONNECTIONS + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}: cannot open the sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    idle: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 20
        for _ in range(IDLE_CONNECTIONS):
            idle.append(socket.create_connection(address(open_server), timeout=5))
            assert time.monotonic() < deadline, "opening the idle connections took too long"
        # The server holds them all: its descriptors go well past select()'s 1024.
        open_server.wait_for(
            lambda: held_descriptors(open_server) >= IDLE_CONNECTIONS, 20, "the server to accept"
        )
        for path in ("healthz", "api/v1/runs"):
            reply = open_server.http.get(open_server.url(path), timeout=10)
            assert reply.status_code == 200, open_server.log_tail()
        assert open_server.process.poll() is None, open_server.log_tail()
        assert "out of range" not in open_server.log_tail()
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert open_server.runs() == []


def test_idle_connections_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    server = start_server(store, tmp_path / "serve.log", extra_args=("--idle-timeout", "2"))
    idle = [socket.create_connection(address(server), timeout=10) for _ in range(50)]
    try:
        started = time.monotonic()
        for sock in idle:  # recv returns b"" once the server has closed the connection
            assert sock.recv(1) == b"", "an idle connection got data"
        assert time.monotonic() - started < 8
        assert server.http.get(server.url("healthz"), timeout=10).status_code == 200
    finally:
        for sock in idle:
            sock.close()
        stop_server(server)


def send_headers(server: LiveServer, length: int | None, extra: str = "") -> socket.socket:
    """POST headers for a body of `length` bytes (None: chunked), and none of the body."""
    sock = socket.create_connection(address(server), timeout=5)
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    head = (
        f"POST /api/v1/ingest?run_id=attack&seq=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/octet-stream\r\n{framing}\r\n{extra}\r\n"
    )
    sock.sendall(head.encode())
    return sock


def status_before_body(sock: socket.socket) -> str:
    """The status line the server sends before any of the body was sent."""
    try:
        first = sock.recv(4096)
    except TimeoutError:
        pytest.fail("no answer within 5 s: the server is waiting to read the body")
    return first.split(b"\r\n", 1)[0].decode()


def stream_some(sock: socket.socket, megabytes: int) -> int:
    """Send up to `megabytes` of body; returns bytes sent before the server closed on us."""
    sent = 0
    try:
        for _ in range(megabytes * 16):
            sock.sendall(CHUNK)
            sent += len(CHUNK)
    except OSError:
        pass
    return sent


@pytest.mark.parametrize("length", [50_000_000, 500_000_000, None])
def test_an_unauthenticated_body_is_refused_before_it_is_read(
    token_server: LiveServer, tmp_path: Path, length: int | None
) -> None:
    spool = tmp_path / "spool"
    attempts = (
        "",
        "Authorization: Bearer wrong\r\n",
        f"Cookie: {COOKIE}=forged\r\n",
        "Expect: 100-continue\r\n",  # must get the 401, not `100 Continue`
    )
    for extra in attempts:
        with send_headers(token_server, length, extra) as sock:
            assert status_before_body(sock) == "HTTP/1.1 401 Unauthorized"
            stream_some(sock, 4)
            assert spooled_files(token_server, spool) == []
    assert token_server.process.poll() is None
    assert "attack" not in token_server.log_tail()


def test_an_authenticated_body_over_the_ingest_limit_is_refused_before_it_is_read(
    token_server: LiveServer, tmp_path: Path
) -> None:
    with send_headers(token_server, 500_000_000, f"Authorization: Bearer {TOKEN}\r\n") as sock:
        assert status_before_body(sock).startswith("HTTP/1.1 413")
        stream_some(sock, 4)
    assert spooled_files(token_server, tmp_path / "spool") == []


def test_authenticated_ingest_still_works(token_server: LiveServer) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for seq, headers in enumerate([bearer, {"Cookie": f"{COOKIE}={cookie_value(TOKEN)}"}]):
        body = metrics_segment("guarded", seq, [(seq, "loss", 1.0 - seq / 10)])
        reply = token_server.http.post(
            token_server.url(f"api/v1/ingest?run_id=guarded&seq={seq}"),
            data=body,
            headers={"Content-Type": "application/octet-stream", **headers},
            timeout=10,
        )
        assert reply.status_code == 202, reply.text
    refused = token_server.http.get(token_server.url("api/v1/runs"), timeout=10)
    assert refused.status_code == 401  # body-less requests still meet the Flask guard
    token_server.http.headers.update(bearer)
    token_server.wait_for(
        lambda: [r for r in token_server.runs() if r["run_id"] == "guarded"], 15, "the run"
    )
