"""A fixed-size ring of the most recent float64 values (host memory, numpy).

The runaway signal compares the generator's most recent per-sample means with the reference;
this keeps exactly the last `capacity` of them without reallocating as batches stream in.
"""

from __future__ import annotations

import numpy as np

from trainlight.collectors.health.ks import FloatArray


class Ring:
    """The `capacity` most recent values (host, float64)."""

    def __init__(self, capacity: int) -> None:
        self._data = np.empty(capacity, dtype=np.float64)
        self._next = 0  # where the next value goes
        self._size = 0

    def extend(self, values: FloatArray) -> None:
        capacity = self._data.size
        values = values[-capacity:]
        end = self._next + values.size
        head = min(end, capacity) - self._next
        self._data[self._next : self._next + head] = values[:head]
        self._data[: values.size - head] = values[head:]
        self._next = end % capacity
        self._size = min(self._size + values.size, capacity)

    def values(self) -> FloatArray:
        """A copy, oldest first."""
        if self._size < self._data.size:
            return self._data[: self._size].copy()
        return np.roll(self._data, -self._next)
