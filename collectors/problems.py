"""Say each kind of trouble once, count every occurrence, and ship the counts with the run.

Monitoring must never crash training and must never spam its log: a failing disk or an unreachable
server would otherwise print a line per flush. Each distinct kind is logged once as a warning; all
occurrences are counted so a user (and the tests) can see exactly what was skipped. The counts
also travel to the store as ordinary metrics (`trainlight/problems` and
`trainlight/problems/<kind>`, cumulative), so "what did the collector skip?" has an answer in SQL
and on the dashboard, not only in a log that may be gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

log = logging.getLogger("trainlight")

PROBLEMS_KEY = "trainlight/problems"  # metrics key of the total; per kind: PROBLEMS_KEY/<kind>


class Problems:
    """Thread-safe tally of non-fatal problems, warning once per kind."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._logger = logger
        self._counts: Counter[str] = Counter()
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def report(self, kind: str, message: str, *, once_per: str | None = None) -> None:
        """Count one occurrence of `kind`; warn with `message` the first time.

        `once_per` groups kinds under one warning: per-layer kinds such as
        `watch_hook_failed:<layer>` are counted per layer but warned about once for all layers.
        """
        family = once_per or kind
        with self._lock:
            self._counts[kind] += 1
            first = family not in self._warned
            self._warned.add(family)
        if first:
            self._logger.warning("trainlight: %s", message)

    def count(self, kind: str) -> int:
        with self._lock:
            return self._counts[kind]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class ProblemCounts:
    """A `writer.RowSource`: the problem counts that changed since the last segment, as metrics.

    Rows are cumulative counts stamped with the current training step (`step_of()`, 0 before
    any), so the latest row of `trainlight/problems/<kind>` is the total for the run.
    """

    def __init__(self, problems: Problems, step_of: Callable[[], int]) -> None:
        self._problems = problems
        self._step_of = step_of
        self._sent: dict[str, int] = {}

    def collect(self) -> dict[str, list[Any]] | None:
        counts = self._problems.snapshot()
        changed = sorted(k for k, n in counts.items() if self._sent.get(k) != n)
        if not changed:
            return None
        self._sent.update(counts)
        keys = [PROBLEMS_KEY, *(f"{PROBLEMS_KEY}/{kind}" for kind in changed)]
        values = [float(sum(counts.values())), *(float(counts[kind]) for kind in changed)]
        step, now = max(int(self._step_of()), 0), int(time.time() * 1_000_000)
        return {
            "table": ["metrics"] * len(keys),
            "step": [step] * len(keys),
            "key": keys,
            "value": values,
            "wall_time": [now] * len(keys),
        }
