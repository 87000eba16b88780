"""`Monitor.close(timeout=...)` against real misbehaving servers on 127.0.0.1, and Retry-After.

A server that trickles its answer (one byte every 2 s never trips a read timeout) or that never
answers must not hold `close()` past its timeout; what was not delivered stays in the outbox and
one warning says where. A busy server's `Retry-After` is honoured, and what it then accepts
arrives exactly once.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.bad_http import (
    IngestLog,
    busy_then_ok_handler,
    serving,
    silent_handler,
    trickling_handler,
)
from trainlight.collectors.http_sink import HttpSink
from trainlight.collectors.monitor import Monitor
from trainlight.collectors.problems import Problems
from trainlight.collectors.schema import list_segment_files, read_header


def _loss_steps(payloads: list[bytes]) -> list[int]:
    """The steps of every `loss` row in these segments (with repeats, if any)."""
    steps: list[int] = []
    for payload in payloads:
        rows = pq.read_table(io.BytesIO(payload)).to_pydict()
        steps += [s for s, k in zip(rows["step"], rows["key"], strict=True) if k == "loss"]
    return steps


def _close_against(url: str, outbox: Path, caplog: pytest.LogCaptureFixture) -> str:
    """Log to `url`, close(timeout=3) while the flush thread is stuck on it; checks; the run id."""
    mon = Monitor(run="stuck", store=url, flush_interval=0.2)
    for step in range(20):
        mon.log(step, loss=1.0 / (step + 1))
    time.sleep(0.5)  # the flush thread is now inside a request the server does not finish
    with caplog.at_level(logging.WARNING, logger="trainlight"):
        started = time.monotonic()
        mon.close(timeout=3)
        took = time.monotonic() - started
    assert took < 3.5, f"close(timeout=3) took {took:.2f} s"
    files = [path for run, _, path in list_segment_files(outbox) if run == mon.run_id]
    assert files, "undelivered segments must stay in the outbox"
    last = pq.read_table(io.BytesIO(files[-1].read_bytes()))
    assert read_header(last).status == "finished"  # the final segment was written despite the hang
    assert sorted(_loss_steps([p.read_bytes() for p in files])) == list(range(20))  # all kept
    undelivered = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(undelivered) == 1 and str(outbox) in undelivered[0], undelivered
    return mon.run_id


@pytest.mark.parametrize(
    "server",
    [lambda: trickling_handler(interval_s=2.0), silent_handler],
    ids=["trickles its answer", "never answers"],
)
def test_close_returns_in_time_whatever_the_server_does(
    server: Callable[[], type],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = tmp_path / "outbox"
    monkeypatch.setenv("TRAINLIGHT_OUTBOX", str(outbox))
    with serving(server()) as url:
        _close_against(url, outbox, caplog)


def test_close_returns_in_time_when_the_server_does_not_accept_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = tmp_path / "outbox"
    monkeypatch.setenv("TRAINLIGHT_OUTBOX", str(outbox))
    with socket.socket() as listener, socket.socket() as first:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepts: once one connection waits, connects hang
        first.connect(listener.getsockname())
        host, port = listener.getsockname()
        _close_against(f"http://{host}:{port}", outbox, caplog)


def test_a_request_has_a_total_deadline_not_a_per_read_timeout(tmp_path: Path) -> None:
    with serving(trickling_handler(interval_s=0.3)) as url:  # reads every 0.3 s, never done
        sink = HttpSink(url, Problems(), outbox=tmp_path / "outbox", timeout_s=1.0)
        started = time.monotonic()
        sink.send("r-1", 0, b"segment")
        took = time.monotonic() - started
    assert 0.9 < took < 1.6, f"one request took {took:.2f} s with timeout_s=1"
    assert sink.pending() == 1


def test_retry_after_is_honoured_and_everything_then_arrives_exactly_once(
    tmp_path: Path,
) -> None:
    seen = IngestLog()
    with serving(busy_then_ok_handler(seen, retry_after="2")) as url:
        sink = HttpSink(url, Problems(), outbox=tmp_path / "outbox", timeout_s=2.0)
        mon = Monitor(run="busy", sink=sink, flush_interval=0.1)
        slowest = 0.0
        for step in range(300):  # ~3 s of training through the busy period
            started = time.perf_counter()
            mon.log(step, loss=float(step))
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.01)
        mon.close(timeout=10)
    assert slowest < 0.05, f"log() blocked {slowest:.3f} s"
    first, second = seen.requests[0], seen.requests[1]
    assert first[3] == 503
    assert second[0] - first[0] >= 2.0, "retried before Retry-After elapsed"
    accepted = seen.accepted()
    seqs = [seq for _, seq, _ in accepted]
    assert sorted(seqs) == list(range(len(seqs))) and len(seqs) >= 2  # each once, none missing
    assert sorted(_loss_steps([body for _, _, body in accepted])) == list(range(300))
    assert sink.pending() == 0


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    from email.message import Message
    from email.utils import formatdate

    from trainlight.collectors.deadline_http import Reply

    def reply(value: str) -> Reply:
        headers = Message()
        headers["Retry-After"] = value
        return Reply(503, b"", headers)

    assert reply("2").retry_after() == 2.0
    assert reply(" 7.5 ").retry_after() == 7.5
    now = time.time()
    assert 29 <= (reply(formatdate(now + 30, usegmt=True)).retry_after(now) or 0) <= 31
    assert reply(formatdate(now - 30, usegmt=True)).retry_after(now) == 0.0
    assert reply("soon").retry_after() is None
    assert Reply(503, b"", Message()).retry_after() is None
