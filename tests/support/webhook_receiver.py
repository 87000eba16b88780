"""A real webhook receiver on 127.0.0.1 for alert tests: records each POST's JSON body; can fail
its first requests (500) or never answer (a black hole that accepts and then stays silent)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, path: str = "/hook", fail_first: int = 0) -> None:
        self.path, self.fail_first = path, fail_first
        self.received: list[dict[str, Any]] = []  # bodies answered 200
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests += 1
                    failing = receiver.requests <= receiver.fail_first
                    if not failing and self.path == receiver.path:
                        receiver.received.append(json.loads(body))
                self.send_response(500 if failing else 200 if self.path == receiver.path else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)


@contextmanager
def receiving(path: str = "/hook", fail_first: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(path, fail_first)
    receiver._thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@contextmanager
def black_hole() -> Iterator[str]:
    """A URL whose server accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        listener.close()


def ingest_and_deliver(store: Any, sender: Any) -> list[dict[str, Any]]:
    """One server pass by hand: ingest the inbox, record its alerts, try each due one once;
    the `alerts` rows after it."""
    from trainlight.app.store.ingest.inbox import Ingester
    from trainlight.app.store.read.alerts import list_alerts

    Ingester(store).ingest_pending()
    sender.after_ingest()
    sender.send_due()
    with store.read() as cur:
        return list_alerts(cur)
