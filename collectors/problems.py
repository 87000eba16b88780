"""Say each kind of trouble once, count every occurrence.

Monitoring must never crash training and must never spam its log: a failing disk or an unreachable
server would otherwise print a line per flush. Each distinct kind is logged once as a warning; all
occurrences are counted so a user (and the tests) can see exactly what was skipped.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

log = logging.getLogger("trainlight")


class Problems:
    """Thread-safe tally of non-fatal problems, warning once per kind."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._logger = logger
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def report(self, kind: str, message: str) -> None:
        with self._lock:
            first = self._counts[kind] == 0
            self._counts[kind] += 1
        if first:
            self._logger.warning("trainlight: %s", message)

    def count(self, kind: str) -> int:
        with self._lock:
            return self._counts[kind]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
