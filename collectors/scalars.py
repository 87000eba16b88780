"""Turning logged scalars into segment columns on the flush thread.

A record's values are floats (numbers and CPU tensors, read by `log()`), integer slots of device
tensors held in `TensorSlots` (copied to the host in one batch per flush, so logging a CUDA loss
every step costs one sync per flush, not one per step), or None for a value `log()` refused and
already reported. NaN and ±Inf pass through
unchanged: they are data (the `nonfinite` signal reads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from trainlight.collectors.buffer import Record


@dataclass
class ScalarColumns:
    """Column data for `metrics` rows of one segment."""

    step: list[int] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    max_slot: int = -1  # highest tensor slot these rows used
    # (key, step) of tensor values whose slot was not read (a bookkeeping bug, not data): they
    # get no row, because a NaN there would paint a false red `nonfinite`.
    missing: list[tuple[str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)

    def arrow(self) -> dict[str, pa.Array]:
        micros = [int(t * 1_000_000) for t in self.wall_time]
        return {
            "table": pa.array(["metrics"] * len(self.step), pa.string()).dictionary_encode(),
            "step": pa.array(self.step, pa.int64()),
            "key": pa.array(self.key, pa.string()).dictionary_encode(),
            "value": pa.array(self.value, pa.float64()),
            "wall_time": pa.array(micros, pa.timestamp("us")),
        }


def host_scalar(value: Any) -> float:
    """A non-tensor logged value as a float; TypeError for values that are not numbers."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (str, bytes)):  # float("0.5") would parse it; a label is not a metric
        raise TypeError(f"expected a number or a 0-d tensor, got {type(value).__name__}")
    try:
        return float(value)  # numpy scalars and other number-likes
    except (TypeError, ValueError):
        raise TypeError(f"expected a number or a 0-d tensor, got {type(value).__name__}") from None


def records_to_columns(
    records: Sequence[Record], slot_base: int = 0, slot_values: Sequence[float | None] = ()
) -> ScalarColumns:
    """Flatten records into metric rows; tensor slots are read from `slot_values[slot - base]`
    (None there: a value whose device could not be read, already reported: no row; a slot
    outside `slot_values`: no row, listed in `missing` for the caller to report)."""
    cols = ScalarColumns()
    for step, wall_time, values in records:
        for key, value in values.items():
            if value.__class__ is float:
                cols.value.append(value)
            elif value.__class__ is int:
                index = value - slot_base
                cols.max_slot = max(cols.max_slot, value)
                if not 0 <= index < len(slot_values):
                    cols.missing.append((key, step))
                    continue
                read = slot_values[index]
                if read is None:
                    continue
                cols.value.append(read)
            else:  # None: refused by log(), already reported
                continue
            cols.step.append(step)
            cols.key.append(key)
            cols.wall_time.append(wall_time)
    return cols
