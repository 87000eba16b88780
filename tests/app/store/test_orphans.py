"""Abandoned `.tmp` files in the inbox (a writer killed mid-write) are removed by the ingester."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.segments import metrics_segment
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.ingest.orphans import ORPHAN_AGE_S, remove_orphan_temporaries
from trainlight.collectors.schema import StoreLayout

# A writer that stops between writing its temporary and renaming it: `kill -9` lands there.
_KILLED_WRITER = """
import os, sys, time, tempfile
from pathlib import Path
target = Path(sys.argv[1])
fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
os.write(fd, b"x" * 4096)
os.fsync(fd)
print(tmp, flush=True)
time.sleep(60)
"""


def _killed_mid_write(target: Path) -> Path:
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    tmp = Path(writer.stdout.readline().strip())
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    return tmp


def test_orphans_older_than_the_cutoff_are_removed_and_fresh_ones_kept(tmp_path: Path) -> None:
    layout = StoreLayout.resolve(tmp_path)
    (layout.inbox / "r-1").mkdir(parents=True)
    old = _killed_mid_write(layout.segment_path("r-1", 0))
    fresh = _killed_mid_write(layout.segment_path("r-1", 1))
    ancient = time.time() - ORPHAN_AGE_S - 5
    os.utime(old, (ancient, ancient))
    segment = layout.segment_path("r-1", 2)
    segment.write_bytes(metrics_segment("r-1", 2, [(0, "x", 1.0)]))
    os.utime(segment, (ancient, ancient))  # an old finished segment is not a temporary
    (layout.inbox / "r-1" / ".notes").write_text("not ours")
    assert remove_orphan_temporaries(layout.inbox) == 1
    assert not old.exists() and fresh.exists() and segment.exists()
    assert (layout.inbox / "r-1" / ".notes").exists()
    assert remove_orphan_temporaries(layout.inbox, max_age_s=0, now=time.time() + 1) == 1
    assert not fresh.exists()


def test_the_serving_ingest_loop_sweeps_them(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path))
    try:
        (store.layout.inbox / "r-1").mkdir(parents=True)
        orphan = _killed_mid_write(store.layout.segment_path("r-1", 0))
        ancient = time.time() - ORPHAN_AGE_S - 5
        os.utime(orphan, (ancient, ancient))
        stop = threading.Event()
        loop = threading.Thread(target=Ingester(store).run, args=(stop, 0.05))
        loop.start()
        deadline = time.monotonic() + 10
        while orphan.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        loop.join(timeout=10)
        assert not orphan.exists()
    finally:
        store.close()
