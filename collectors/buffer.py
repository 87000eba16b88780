"""A bounded, lock-free record buffer between the training loop and the flush thread.

`log()` must cost microseconds and never block training, so it only appends a tuple to a
`collections.deque` (append and popleft are atomic in CPython, so no lock is needed). When the
buffer is full the OLDEST record is discarded to make room: recent values matter most for a live
health view. Every discarded record is counted; the count travels to the store with each segment
(`runs.dropped_rows`) and is warned about once, so data loss is never silent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

# (step, wall_time_seconds, {key: value}) — values are floats or detached 0-d tensors.
Record = tuple[int, float, Mapping[str, Any]]


class RecordBuffer:
    """Fixed-capacity FIFO of logged records; drops oldest-first and counts what it drops."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._records: deque[Record] = deque()
        self.dropped = 0  # records discarded because the buffer was full (cumulative)

    def append(self, record: Record) -> None:
        records = self._records
        if len(records) >= self.capacity:
            try:
                records.popleft()
                self.dropped += 1
            except IndexError:  # drained concurrently: there is room now
                pass
        records.append(record)

    def drain(self) -> list[Record]:
        """Remove and return every record present now (records appended meanwhile stay)."""
        records = self._records
        out = []
        for _ in range(len(records)):
            try:
                out.append(records.popleft())
            except IndexError:
                break
        return out

    def __len__(self) -> int:
        return len(self._records)
