"""Misbehaving HTTP servers on 127.0.0.1 for the collector's transport tests.

Each runs in a thread, serves every connection on its own daemon thread, and stops (ending its
loops, which are bounded in count and time anyway) when the `with` block exits.
"""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

Behaviour = Callable[[socketserver.StreamRequestHandler, threading.Event], None]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


@contextmanager
def serving(handler: type[socketserver.BaseRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 (a free port) and yield the base URL."""
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop = getattr(handler, "stop", None)
        if isinstance(stop, threading.Event):
            stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def trickling_handler(interval_s: float = 2.0, max_bytes: int = 30) -> type:
    """Reads the request, then answers one byte of a status line every `interval_s` seconds."""
    stop = threading.Event()

    class Trickle(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            length = 0
            while line := self.rfile.readline(65536):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                if line in (b"\r\n", b"\n"):
                    break
            self.rfile.read(length)
            for byte in b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"[:max_bytes]:
                if stop.wait(interval_s):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()

    Trickle.stop = stop  # type: ignore[attr-defined]
    return Trickle


def silent_handler(max_wait_s: float = 20.0) -> type:
    """Accepts the connection and reads nothing, answers nothing."""
    stop = threading.Event()

    class Silent(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            stop.wait(max_wait_s)

    Silent.stop = stop  # type: ignore[attr-defined]
    return Silent


@dataclass
class IngestLog:
    """What an ingest server saw: (monotonic time, run_id, seq, status answered, body)."""

    requests: list[tuple[float, str, int, int, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[tuple[str, int, bytes]]:
        with self.lock:
            return [(r, s, body) for _, r, s, status, body in self.requests if status == 202]


def busy_then_ok_handler(log: IngestLog, retry_after: str, busy_answers: int = 1) -> type:
    """`POST /api/v1/ingest`: 503 with `Retry-After` for the first `busy_answers`, then 202."""

    class Ingest(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            query = parse_qs(urlsplit(self.path).query)
            with log.lock:
                busy = len(log.requests) < busy_answers
                status = 503 if busy else 202
                log.requests.append(
                    (time.monotonic(), query["run_id"][0], int(query["seq"][0]), status, body)
                )
            self.send_response(status)
            if busy:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # the stop-request poll: no request
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Ingest
