"""Back-pressure on a real `trainlight serve` (127.0.0.1): past the backlog bound, an ingest is
refused with 503 + Retry-After as soon as its headers are in, before its body is read or
anything is persisted; once the backlog is ingested, the same segment is accepted."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from tests.support.segments import metrics_segment
from tests.support.server import LiveServer, start_server, stop_server
from trainlight.app.backlog import Backlog, BacklogLimits, measure_backlog, retry_after
from trainlight.collectors.schema import StoreLayout, list_segment_files, write_atomically

RUN = "pressed-1"


def post(server: LiveServer, seq: int) -> tuple[int, str | None]:
    reply = server.http.post(
        server.url("api/v1/ingest"),
        params={"run_id": RUN, "seq": str(seq)},
        data=metrics_segment(RUN, seq, [(seq, "loss", float(seq))]),
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    return reply.status_code, reply.headers.get("Retry-After")


def headers_only_reply(server: LiveServer, announced: int) -> bytes:
    """Announce a large body, send none of it, and read the answer (bounded by a timeout)."""
    port = int(server.base_url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = (
            f"POST /api/v1/ingest?run_id={RUN}&seq=99 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {announced}\r\n\r\n"
        )
        sock.sendall(head.encode())
        return sock.recv(4096)


def test_measure_backlog_counts_files_and_ages_each_runs_oldest(tmp_path: Path) -> None:
    layout = StoreLayout.resolve(tmp_path)
    now = time.time()
    for run_id, seqs, age in (("a", [0, 1, 2], 40.0), ("b", [5], 3.0)):
        layout.run_inbox(run_id).mkdir(parents=True)
        for seq in seqs:
            write_atomically(layout.segment_path(run_id, seq), b"x")
        os.utime(layout.segment_path(run_id, seqs[0]), (now - age, now - age))
    backlog = measure_backlog(layout.inbox, now)
    assert backlog.segments == 4 and abs(backlog.oldest_age_s - 40.0) < 0.5
    limits = BacklogLimits(max_segments=10, max_lag_s=30.0)
    assert retry_after(backlog, limits) == 3  # 40/30 over: ceil(2 * 1.33)
    assert retry_after(Backlog(4, 10.0), limits) is None
    assert retry_after(Backlog(50, 0.0), limits) == 10
    assert retry_after(Backlog(10**6, 0.0), limits) == 30  # capped
    assert retry_after(Backlog(10**6, 10**6), BacklogLimits(0, 0)) is None  # bounds off


def test_ingest_refused_with_retry_after_past_the_backlog_bound(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    layout = StoreLayout.resolve(store_dir)
    # An ingest pass only at start: whatever is accepted afterwards stays in the inbox.
    slow = ("--max-backlog", "3", "--max-lag", "0", "--ingest-interval", "3600")
    server = start_server(store_dir, tmp_path / "serve.log", extra_args=slow)
    try:
        assert [post(server, seq)[0] for seq in range(4)] == [202] * 4
        refused = server.wait_for(lambda: post(server, 4)[0] == 503, 10, "a 503")
        assert refused
        status, wait = post(server, 7)
        assert status == 503 and wait is not None and 1 <= int(wait) <= 30
        assert not layout.segment_path(RUN, 7).exists()  # refused: nothing persisted
        started = time.monotonic()
        answer = headers_only_reply(server, 50_000_000)
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: " in answer, answer
        assert time.monotonic() - started < 5
        assert server.runs() == []  # nothing ingested while held back
    finally:
        stop_server(server)
    server = start_server(store_dir, tmp_path / "serve2.log")  # ingests the backlog
    try:
        pending = {seq for run, seq, _ in _inbox(layout) if run == RUN}
        assert pending <= {0, 1, 2, 3, 4}
        server.wait_for(lambda: not _inbox(layout), 30, "the backlog ingested")
        assert post(server, 7) == (202, None)
        ingested = server.wait_for(lambda: (server.run(RUN) or {}).get("last_step") == 7, 30, "7")
        assert ingested
    finally:
        stop_server(server)


def _inbox(layout: StoreLayout) -> list[tuple[str, int, Path]]:
    return list_segment_files(layout.inbox)
