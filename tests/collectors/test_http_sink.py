"""HttpSink against a real server: an outbox shared by several processes delivers each file once."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.segments import metrics_segment
from tests.support.server import running_server, wait_until
from trainlight.collectors.http_sink import CONTROL_FRESH_S, HttpSink
from trainlight.collectors.problems import Problems

pytestmark = pytest.mark.slow


def test_a_live_writers_files_are_left_alone_and_an_exited_ones_are_delivered(
    tmp_path: Path,
) -> None:
    outbox = tmp_path / "outbox"
    dead_url = "http://127.0.0.1:9"  # discard port: nothing listens
    writer = HttpSink(dead_url, Problems(), outbox=outbox, timeout_s=0.5)
    for seq in range(3):
        writer.send("r-1", seq, metrics_segment("r-1", seq, [(seq, "loss", 1.0)]))
    assert writer.pending() == 3
    with running_server(tmp_path / "store") as server:
        other = HttpSink(server.base_url, Problems(), outbox=outbox)
        other.retry()
        assert len(list((outbox / "r-1").glob("*.parquet"))) == 3  # its writer is alive
        os.close(writer._owned.pop("r-1"))  # the writer exits (the OS releases its lock)
        other.retry()
        assert not list((outbox / "r-1").glob("*.parquet"))
        wait_until(lambda: (server.run("r-1") or {}).get("last_step") == 2, 30, what="ingested")


class _Recorder(BaseHTTPRequestHandler):
    """Answers like the ingest API (no stop requested) and records each request's method."""

    seen: ClassVar[list[str]] = []

    def _answer(self, status: int) -> None:
        body = json.dumps({"run_id": "r-1", "stop": False, "reason": ""}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append("POST")
        self._answer(202)

    def do_GET(self) -> None:
        self.seen.append("GET")
        self._answer(200)

    def log_message(self, *args: object) -> None:
        pass


def test_an_ingest_reply_stands_for_the_control_poll_right_after_it(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = HttpSink(f"http://127.0.0.1:{server.server_port}", Problems(), outbox=tmp_path)
        sink.send("r-1", 0, metrics_segment("r-1", 0, [(0, "loss", 1.0)]))
        assert sink.poll_stop("r-1") is None
        assert _Recorder.seen == ["POST"]  # the reply told the stop state: no second request
        time.sleep(CONTROL_FRESH_S + 0.1)  # nothing posted since: the run must ask
        assert sink.poll_stop("r-1") is None
        assert _Recorder.seen == ["POST", "GET"]
    finally:
        server.shutdown()
        server.server_close()
