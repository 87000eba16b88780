"""Back-pressure: refuse new segments with `503 Retry-After` while the inbox holds too much.

A saturated server that keeps acknowledging only grows its inbox, and with it every run's lag and
the disk it uses. The backlog is what waits in the inbox: how many segment files and how many
bytes. A daemon thread re-measures it every `REFRESH_S` (one walk over the run folders and a
`stat` per file); a request only reads the last measurement, so an ingest costs no listing. The
inbox is measured on disk, not asked of the ingester, so receiver processes push back exactly
like the main one. Nothing refused was acknowledged, so nothing is lost: the collector keeps the
segment in its outbox and retries after `Retry-After` seconds (collectors/http_sink.py). The hint
grows with how far past its bound the backlog is, so collectors spread out instead of hammering.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from trainlight.collectors.store_files import parse_segment_file_name

REFRESH_S = 0.5
MIN_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 30


@dataclass(frozen=True)
class BacklogLimits:
    """Push back past `max_segments` segment files or `max_bytes` waiting (0: no bound)."""

    # The ingester takes >= 200 small segments/s from many runs on 2 cores (bench/
    # ingest_throughput.py): 6000 is about 30 s of lag at that rate.
    max_segments: int = 6000
    max_bytes: int = 2 * 1024**3


DEFAULT_BACKLOG_LIMITS = BacklogLimits()


@dataclass(frozen=True)
class Backlog:
    segments: int
    bytes: int


def measure_backlog(inbox: Path) -> Backlog:
    """Segment files waiting in `inbox/<run_id>/` and their total size.

    Directory entries only (no Path per file): under 200 runs, a walk building paths took an
    eighth of the main process's samples."""
    segments = size = 0
    try:
        runs = [entry.path for entry in os.scandir(inbox) if entry.is_dir()]
    except OSError:
        return Backlog(0, 0)
    for run in runs:
        try:
            entries = os.scandir(run)
        except OSError:
            continue
        with entries:
            for entry in entries:
                if parse_segment_file_name(entry.name) is None:
                    continue
                try:
                    size += entry.stat().st_size
                except OSError:
                    continue  # ingested meanwhile
                segments += 1
    return Backlog(segments, size)


def busy_message(retry_after_s: int) -> str:
    return (
        f"the server's inbox is past its backlog bound; retry in {retry_after_s} s "
        "(the segment was not taken)"
    )


def load(backlog: Backlog, limits: BacklogLimits) -> float:
    """The backlog as a fraction of its tighter bound (above 1: past it; 0 with no bound)."""
    ratios = []
    if limits.max_segments > 0:
        ratios.append(backlog.segments / limits.max_segments)
    if limits.max_bytes > 0:
        ratios.append(backlog.bytes / limits.max_bytes)
    return max(ratios, default=0.0)


def retry_after(backlog: Backlog, limits: BacklogLimits) -> int | None:
    """Seconds a collector should wait, or None while the backlog is within its bounds."""
    over = load(backlog, limits)
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
        self._load = 0.0
        self._stop = threading.Event()

    def refresh(self) -> Backlog:
        backlog = measure_backlog(self.inbox)
        self._retry_after = retry_after(backlog, self.limits)
        self._load = load(backlog, self.limits)
        return backlog

    def retry_after(self) -> int | None:
        return self._retry_after

    def start(self) -> None:
        self.refresh()
        threading.Thread(target=self._loop, name="trainlight-backlog", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        # Far below the bound, the backlog cannot cross it within a few refreshes: measure less.
        while not self._stop.wait(self.refresh_s * (1 if self._load > 0.25 else 4)):
            self.refresh()
