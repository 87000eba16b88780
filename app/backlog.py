"""Back-pressure: refuse new segments with `503 Retry-After` while the ingester is far behind.

A saturated server that keeps acknowledging only grows its inbox and every run's lag. The backlog
is what waits in the inbox: how many segment files, and how old the oldest one is (each run's
lowest seq file, so one `stat` per run). A thread re-measures it every `REFRESH_S`; the check on
a request only reads the last measurement, because it runs on waitress's event loop, as soon as
the headers of `POST /api/v1/ingest` are parsed and before any of the body is read
(app/connections.py). Nothing is acknowledged, so nothing is lost: the collector keeps the
segment in its outbox and retries after `Retry-After` seconds (collectors/http_sink.py). The hint
grows with how far past the bound the backlog is, so collectors spread out instead of hammering.
The inbox is measured on disk, not asked of the ingester, so receiver processes can use it too.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from trainlight.collectors.schema import list_segment_files

REFRESH_S = 0.5
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 30


@dataclass(frozen=True)
class BacklogLimits:
    """When to push back: more segments than `max_segments` waiting, or one older than
    `max_lag_s` (0 turns a bound off)."""

    max_segments: int = 4000
    max_lag_s: float = 30.0


@dataclass(frozen=True)
class Backlog:
    segments: int
    oldest_age_s: float


def measure_backlog(inbox: Path, now: float | None = None) -> Backlog:
    """Segment files in `inbox` and the age of the oldest (by mtime; each run's first in seq)."""
    files = list_segment_files(inbox)
    now = time.time() if now is None else now
    oldest = now
    first_of_run: dict[str, Path] = {}
    for run_id, _seq, path in files:  # sorted by run, then seq
        first_of_run.setdefault(run_id, path)
    for path in first_of_run.values():
        try:
            oldest = min(oldest, os.stat(path).st_mtime)
        except OSError:
            continue  # ingested meanwhile
    return Backlog(len(files), max(0.0, now - oldest))


def retry_after(backlog: Backlog, limits: BacklogLimits) -> int | None:
    """Seconds a collector should wait, or None while the backlog is within its bounds."""
    ratios = []
    if limits.max_segments > 0:
        ratios.append(backlog.segments / limits.max_segments)
    if limits.max_lag_s > 0:
        ratios.append(backlog.oldest_age_s / limits.max_lag_s)
    over = max(ratios, default=0.0)
    if over <= 1.0:
        return None
    return max(MIN_RETRY_AFTER_S, min(MAX_RETRY_AFTER_S, math.ceil(2 * over)))


class BacklogGauge:
    """The inbox's backlog, re-measured on a daemon thread; `retry_after()` costs nothing."""

    def __init__(self, inbox: Path, limits: BacklogLimits, refresh_s: float = REFRESH_S) -> None:
        self.inbox = inbox
        self.limits = limits
        self.refresh_s = refresh_s
        self._retry_after: int | None = None
        self._stop = threading.Event()

    def refresh(self) -> Backlog:
        backlog = measure_backlog(self.inbox)
        self._retry_after = retry_after(backlog, self.limits)
        return backlog

    def retry_after(self) -> int | None:
        return self._retry_after

    def start(self) -> None:
        self.refresh()
        threading.Thread(target=self._loop, name="trainlight-backlog", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except OSError:
                self._retry_after = None  # cannot measure: do not refuse because of it
