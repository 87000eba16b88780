"""HttpSink against a real server: an outbox shared by several processes delivers each file once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.segments import metrics_segment
from tests.support.server import running_server, wait_until
from trainlight.collectors.http_sink import HttpSink
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
