"""Turning logged scalars into segment columns, with one device-to-host copy per flush.

`log()` keeps 0-d tensors as detached tensors (detaching frees the autograd graph immediately, and
costs no device synchronisation). Only here, on the flush thread, are they stacked per device and
copied to the host in one transfer: logging a CUDA loss every step costs one sync per flush, not one
per step. NaN and ±Inf pass through unchanged: they are data (the `nonfinite` signal reads them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import torch

from trainlight.collectors.buffer import Record


@dataclass
class ScalarColumns:
    """Column data for `metrics` rows of one segment, plus what had to be skipped and why."""

    step: list[int] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why its values were skipped

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


def host_scalar(value: Any) -> Any:
    """What `log()` stores for one value: a float, or a detached tensor to be copied later.

    Raises TypeError for values that are not scalars; the caller decides how to report it.
    """
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (str, bytes)):  # float("0.5") would parse it; a label is not a metric
        raise TypeError(f"expected a number or a 0-d tensor, got {type(value).__name__}")
    try:
        return float(value)  # numpy scalars and other number-likes
    except (TypeError, ValueError):
        raise TypeError(f"expected a number or a 0-d tensor, got {type(value).__name__}") from None


def records_to_columns(records: Sequence[Record]) -> ScalarColumns:
    """Flatten logged records into metric rows, copying all tensor values to the host at once."""
    cols = ScalarColumns()
    tensor_slots: list[int] = []
    tensors: list[torch.Tensor] = []
    for step, wall_time, values in records:
        for key, value in values.items():
            if value.__class__ is float:
                cols.value.append(value)
            elif value is None:  # refused by log(), already reported
                continue
            elif isinstance(value, torch.Tensor) and value.numel() == 1:
                tensor_slots.append(len(cols.value))
                tensors.append(value)
                cols.value.append(math.nan)
            else:
                cols.skipped[key] = _describe(value)
                continue
            cols.step.append(step)
            cols.key.append(key)
            cols.wall_time.append(wall_time)
    for slot, number in zip(tensor_slots, tensors_to_floats(tensors), strict=True):
        cols.value[slot] = number
    return cols


def tensors_to_floats(tensors: Sequence[torch.Tensor]) -> list[float]:
    """Values of single-element tensors, in order, with one host copy per device."""
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    out = [math.nan] * len(tensors)
    for indices in by_device.values():
        stacked = torch.stack([tensors[i].reshape(()).to(torch.float64) for i in indices])
        for i, number in zip(indices, stacked.cpu().tolist(), strict=True):
            out[i] = number
    return out


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} (log a 0-d tensor or a float)"
    return f"a {type(value).__name__} (log a 0-d tensor or a float)"
