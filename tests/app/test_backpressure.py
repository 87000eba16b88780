"""Back-pressure: past its backlog bound a real server answers ingest 503 + Retry-After, and the
collector keeps the segment and delivers it once the inbox has drained: nothing lost, nothing
twice. The server runs in this process on 127.0.0.1 with no ingester thread, so the backlog only
drains when the test ingests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support.segments import metrics_segment
from trainlight.app.backlog import (
    Backlog,
    BacklogGauge,
    BacklogLimits,
    load,
    measure_backlog,
    retry_after,
)
from trainlight.app.factory import create_app
from trainlight.app.listening import ServeOptions, http_server, intake_settings
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.http_sink import HttpSink
from trainlight.collectors.problems import Problems
from trainlight.collectors.schema import StoreLayout

RUN = "busy-run"
SEGMENT = {"Content-Type": "application/vnd.apache.parquet", "X-Trainlight": "1"}


@contextmanager
def serving(store: Store, options: ServeOptions) -> Iterator[tuple[str, BacklogGauge]]:
    intake = intake_settings(options, store.layout)
    assert intake.backlog is not None
    busy = intake.backlog.retry_after
    server = http_server(create_app(store, intake=intake).server, options, busy=busy)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}/", intake.backlog
    finally:
        intake.backlog.stop()
        server.close()
        server.task_dispatcher.shutdown()


def post(url: str, seq: int) -> requests.Response:
    return requests.post(
        f"{url}api/v1/ingest",
        params={"run_id": RUN, "seq": seq},
        data=metrics_segment(RUN, seq, [(seq, "loss", 1.0)]),
        headers=SEGMENT,
        timeout=10,
    )


def refused_before_the_body(url: str) -> bytes:
    """The answer to an ingest whose headers announce a body that is never sent."""
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v1/ingest?run_id={RUN}&seq=9 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/vnd.apache.parquet\r\nX-Trainlight: 1\r\n"
            "Content-Length: 100000\r\n\r\n".encode()
        )
        answer = sock.recv(65536)  # a timeout here: the server waited for the body
    assert b"Retry-After: " in answer
    return answer


def ingested_seqs(store: Store) -> list[int]:
    with store.read() as cur:
        rows = cur.execute("SELECT seq FROM segments WHERE run_id = ? ORDER BY seq", [RUN])
        return [int(seq) for (seq,) in rows.fetchall()]


def test_a_refused_segment_is_kept_and_delivered_once_the_backlog_drains(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path / "store"))
    options = ServeOptions(port=0, backlog=BacklogLimits(max_segments=2, max_bytes=0))
    try:
        with serving(store, options) as (url, gauge):
            for seq in range(3):
                assert post(url, seq).status_code == 202
            assert gauge.refresh().segments == 3  # past the bound of 2

            refused = post(url, 3)
            assert refused.status_code == 503
            assert 1 <= int(refused.headers["Retry-After"]) <= 30
            assert "backlog" in refused.json()["error"]
            assert measure_backlog(store.layout.inbox).segments == 3, "nothing was written"
            assert refused_before_the_body(url).startswith(b"HTTP/1.1 503")

            problems = Problems()
            sink = HttpSink(url, problems, outbox=tmp_path / "outbox")
            sink.send(RUN, 3, metrics_segment(RUN, 3, [(3, "loss", 1.0)]))
            assert sink.pending() == 1, "the refused segment stays in the outbox"

            Ingester(store).ingest_pending()
            assert gauge.refresh().segments == 0
            deadline = time.monotonic() + 40
            while sink.pending() and time.monotonic() < deadline:  # after its Retry-After
                sink.retry()
                time.sleep(0.1)
            assert sink.pending() == 0
            Ingester(store).ingest_pending()
        assert ingested_seqs(store) == [0, 1, 2, 3]
    finally:
        store.close()


def test_the_backlog_counts_waiting_segment_files_and_their_bytes(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "r-1").mkdir(parents=True)
    (inbox / "r-2").mkdir()
    (inbox / "r-1" / "000000000000.parquet").write_bytes(b"x" * 10)
    (inbox / "r-1" / "000000000001.parquet").write_bytes(b"x" * 5)
    (inbox / "r-1" / ".000000000002.parquet.abc.tmp").write_bytes(b"x" * 99)  # a write under way
    (inbox / "r-2" / "000000000000.parquet").write_bytes(b"")
    (inbox / "stray.parquet").write_bytes(b"x")  # not in a run folder
    assert measure_backlog(inbox) == Backlog(segments=3, bytes=15)
    assert measure_backlog(tmp_path / "absent") == Backlog(0, 0)
    limits = BacklogLimits(max_segments=2, max_bytes=0)
    assert load(Backlog(3, 15), limits) == 1.5
    assert retry_after(Backlog(3, 15), limits) == 3
    assert retry_after(Backlog(2, 15), limits) is None
