"""The ingester starts a pass when a segment arrives (in this process or through a receiver's
pipe), not only on its poll."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tests.support.segments import metrics_segment
from tests.support.server import wait_until
from trainlight.app.arrivals import Arrivals, pipe_notifier
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.schema import StoreLayout, write_atomically


def ingested(store: Store) -> int:
    with store.read() as cur:
        row = cur.execute("SELECT count(*) FROM segments").fetchone()
    return int(row[0]) if row else 0


def test_an_arrival_wakes_the_ingester_long_before_its_poll(tmp_path: Path) -> None:
    store = Store(StoreLayout(tmp_path / "store"))
    arrivals, stop = Arrivals(), threading.Event()
    ingester = Ingester(store)
    thread = threading.Thread(target=ingester.run, args=(stop, 60.0, arrivals), daemon=True)
    thread.start()
    try:
        wait_until(lambda: ingested(store) == 0, 10, what="the first (empty) pass")
        time.sleep(0.3)  # the ingester now waits: for 60 s, or for an arrival
        for seq, notify in enumerate([arrivals.notify, pipe_notifier(arrivals.write_fd)]):
            store.layout.run_inbox("r-1").mkdir(parents=True, exist_ok=True)
            path = store.layout.segment_path("r-1", seq)
            write_atomically(path, metrics_segment("r-1", seq, [(seq, "loss", 1.0)]))
            notify()  # the main process's intake, then a receiver's byte in the pipe
            wait_until(lambda s=seq: ingested(store) == s + 1, 10, what=f"segment {seq}")
    finally:
        stop.set()
        arrivals.notify()
        thread.join(10)
        store.close()
    assert not thread.is_alive()


def test_a_full_pipe_never_blocks_a_receiver() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    notify = pipe_notifier(write_fd)
    for _ in range(200_000):  # far beyond a pipe's buffer: the writes that do not fit are dropped
        notify()
    assert os.read(read_fd, 1) == b"\0"
    os.close(read_fd)
    os.close(write_fd)
    notify()  # the main process is gone: still no error
