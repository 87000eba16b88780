"""A request trickled a byte at a time is cut off at its deadline (slowloris), on a real server;
requests that arrive at a normal pace are served as before."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from trainlight.app.connections import RequestDeadlines
from trainlight.app.factory import create_app
from trainlight.app.listening import ServeOptions, http_server
from trainlight.app.store.database import Store
from trainlight.collectors.schema import StoreLayout

DEADLINES = RequestDeadlines(headers_s=1.0, whole_s=3.0)


@contextmanager
def serving(tmp_path: Path) -> Iterator[int]:
    store = Store(StoreLayout(tmp_path / "store"))
    options = ServeOptions(port=0, deadlines=DEADLINES)
    server = http_server(create_app(store).server, options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield int(server.effective_port)
    finally:
        server.close()
        server.task_dispatcher.shutdown()
        store.close()


def trickle(sock: socket.socket, data: bytes, every_s: float, limit_s: float) -> bytes:
    """Send `data` one byte every `every_s` until the server answers (bounded by `limit_s`)."""
    start = time.monotonic()
    sock.settimeout(every_s)
    for byte in data:
        if time.monotonic() - start > limit_s:
            break
        try:
            sock.sendall(bytes([byte]))
            return sock.recv(65536)
        except TimeoutError:
            continue  # nothing yet: keep trickling
    return b""


def status(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


def test_headers_trickled_past_their_deadline_get_408_and_the_connection_closes(
    tmp_path: Path,
) -> None:
    headers = b"GET /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 200
    with serving(tmp_path) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            start = time.monotonic()
            answer = trickle(sock, headers, every_s=0.2, limit_s=8.0)
            took = time.monotonic() - start
        assert status(answer).endswith(b" 408 Request Timeout"), answer[:100]
        assert took < 4.0  # cut at the next byte after 1 s, not after 200 bytes x 0.2 s
        ok = requests.get(f"http://127.0.0.1:{port}/api/v1/runs", timeout=10)
        assert ok.status_code == 200  # the server is fine for everyone else


def test_a_body_trickled_past_the_whole_request_deadline_is_refused(tmp_path: Path) -> None:
    body = b"x" * 400
    request = (
        b"POST /api/v1/runs/r-1/stop HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trainlight: 1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    )
    with serving(tmp_path) as port, socket.create_connection(("127.0.0.1", port), 10) as sock:
        sock.sendall(request)  # headers at once, then the body a byte at a time
        answer = trickle(sock, body, every_s=0.1, limit_s=8.0)
    assert status(answer).endswith(b" 408 Request Timeout"), answer[:100]
