"""What one LCA measurement leaves for the flush thread, and how it becomes segment rows.

A measurement ends with a few host numbers (the two probe losses, which the adaptive quadrature
had to read anyway, and the interval count) and two small device tensors: the per-tensor sums of
A (float64), and a float32 one holding everything per-element worth storing: the count of
negative A per parameter tensor, then the pooled frames. The flush thread copies the device
tensors of all pending measurements to the host (one transfer per device and kind) and turns them
into the three tables' rows (DESIGN.md §3): `metrics` (`lca/total` = ΣA, `lca/actual` = ΔL,
`lca/residual`, `lca/intervals`, `lca/grounded`, `lca/nonfinite`, and any extra rows such as the
frame stride), `layer_metrics` (`lca`, `lca_helping` per layer) and `lca_frames`.

A layer is the module owning a parameter (its `named_modules()` name; "" for parameters of the
root module): weights and biases of a module are summed into one row. `lca_helping` is the
fraction of the layer's parameters whose A is negative (NaN counts as not negative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from trainlight.collectors.wire import LCA_TOTAL

LCA = "lca"
HELPING = "lca_helping"
TOTAL = LCA_TOTAL
ACTUAL = "lca/actual"
RESIDUAL = "lca/residual"
INTERVALS = "lca/intervals"
GROUNDED = "lca/grounded"
NONFINITE = "lca/nonfinite"


@dataclass(frozen=True)
class FrameSpec:
    layer: str
    rows: int
    cols: int


@dataclass(frozen=True)
class StepRecord:
    """One measured step, waiting for the flush thread."""

    step: int
    wall_time: float  # unix seconds
    loss_before: float
    loss_after: float
    intervals: int
    grounded: bool  # the quadrature met its tolerance
    extra: tuple[tuple[str, float], ...]  # further metrics rows (the frame stride)
    layers: tuple[str, ...]  # the layer of each parameter tensor
    sizes: tuple[int, ...]  # elements of each parameter tensor
    frames: tuple[FrameSpec, ...]
    sums: torch.Tensor  # float64 [Σ A of each parameter tensor]
    device_values: torch.Tensor  # float32 [negatives per tensor..., each frame row-major...]

    def metrics(self, sums: Sequence[float]) -> list[tuple[str, float]]:
        """The `metrics` rows, given the host copy of `sums`."""
        total, actual = math.fsum(sums), self.loss_after - self.loss_before
        finite = all(math.isfinite(v) for v in (total, self.loss_before, self.loss_after))
        return [
            (TOTAL, total),
            (ACTUAL, actual),
            (RESIDUAL, actual - total),
            (INTERVALS, float(self.intervals)),
            (GROUNDED, 1.0 if self.grounded else 0.0),
            (NONFINITE, 0.0 if finite else 1.0),
            *self.extra,
        ]


def owner(parameter: str) -> str:
    """The `named_modules()` name of the module a `named_parameters()` name belongs to."""
    return parameter.rpartition(".")[0]


def to_host(tensors: Sequence[torch.Tensor]) -> list[np.ndarray[Any, Any]]:
    """Host copies of 1-D tensors of one dtype, with one device-to-host transfer per device."""
    by_device: dict[torch.device, list[int]] = {}
    for index, tensor in enumerate(tensors):
        by_device.setdefault(tensor.device, []).append(index)
    out: list[np.ndarray[Any, Any]] = [np.empty(0)] * len(tensors)
    for indices in by_device.values():
        parts = [tensors[i] for i in indices]
        host = (torch.cat(parts) if len(parts) > 1 else parts[0]).cpu().numpy()
        offset = 0
        for i in indices:
            size = tensors[i].numel()
            out[i] = host[offset : offset + size]
            offset += size
    return out


def columns(records: Sequence[StepRecord]) -> list[dict[str, Any]]:
    """Column sets for `metrics`, `layer_metrics` and `lca_frames` (empty ones left out)."""
    metrics: dict[str, list[Any]] = {"step": [], "key": [], "value": [], "wall_time": []}
    layers: dict[str, list[Any]] = {"step": [], "layer": [], "key": [], "value": []}
    frames: dict[str, list[Any]] = {"step": [], "layer": [], "n_rows": [], "n_cols": []}
    frame_values: list[np.ndarray[Any, Any]] = []
    all_sums = to_host([r.sums for r in records])
    hosts = to_host([r.device_values for r in records])
    for record, sums, host in zip(records, all_sums, hosts, strict=True):
        wall_us = int(record.wall_time * 1_000_000)
        tensor_sums = [float(v) for v in sums]
        for key, value in record.metrics(tensor_sums):
            _append(metrics, step=record.step, key=key, value=value, wall_time=wall_us)
        negatives = host[: len(record.sizes)].astype(np.float64)
        for layer, total, helping in _per_layer(record, tensor_sums, negatives):
            _append(layers, step=record.step, layer=layer, key=LCA, value=total)
            _append(layers, step=record.step, layer=layer, key=HELPING, value=helping)
        offset = len(record.sizes)
        for spec in record.frames:
            size = spec.rows * spec.cols
            _append(frames, step=record.step, layer=spec.layer, n_rows=spec.rows, n_cols=spec.cols)
            frame_values.append(host[offset : offset + size])
            offset += size
    out: list[dict[str, Any]] = []
    if metrics["step"]:
        out.append({"table": ["metrics"] * len(metrics["step"]), **metrics})
    if layers["step"]:
        out.append({"table": ["layer_metrics"] * len(layers["step"]), **layers})
    if frames["step"]:
        out.append({"table": ["lca_frames"] * len(frames["step"]), **frames})
        out[-1]["values"] = _list_array(frame_values)
    return out


def _per_layer(
    record: StepRecord, tensor_sums: list[float], negatives: np.ndarray[Any, Any]
) -> list[tuple[str, float, float]]:
    """(layer, Σ A, fraction of negative A) per layer, in the order layers first appear."""
    sums: dict[str, list[float]] = {}
    counts: dict[str, list[float]] = {}
    for layer, total, negative, size in zip(
        record.layers, tensor_sums, negatives, record.sizes, strict=True
    ):
        sums.setdefault(layer, []).append(total)
        counts.setdefault(layer, [0.0, 0.0])
        counts[layer][0] += float(negative)
        counts[layer][1] += size
    return [
        (layer, math.fsum(parts), counts[layer][0] / counts[layer][1])
        for layer, parts in sums.items()
    ]


def _append(target: dict[str, list[Any]], **values: Any) -> None:
    for key, value in values.items():
        target[key].append(value)


def _list_array(parts: list[np.ndarray[Any, Any]]) -> pa.Array:
    """list<float32> column without a Python float per value."""
    offsets = np.zeros(len(parts) + 1, dtype=np.int32)
    np.cumsum([p.size for p in parts], out=offsets[1:])
    flat = np.concatenate(parts) if parts else np.empty(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float32()))
