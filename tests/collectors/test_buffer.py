from __future__ import annotations

import pytest

from trainlight.collectors.buffer import RecordBuffer


def test_full_buffer_drops_oldest_and_counts_every_drop() -> None:
    buffer = RecordBuffer(capacity=3)
    for step in range(5):
        buffer.append((step, 0.0, {"loss": float(step)}))
    assert buffer.dropped == 2
    assert [record[0] for record in buffer.drain()] == [2, 3, 4]
    assert len(buffer) == 0


def test_drain_keeps_order_and_empties() -> None:
    buffer = RecordBuffer(capacity=10)
    for step in range(4):
        buffer.append((step, 0.0, {}))
    assert [r[0] for r in buffer.drain()] == [0, 1, 2, 3]
    assert buffer.drain() == []
    assert buffer.dropped == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        RecordBuffer(0)
