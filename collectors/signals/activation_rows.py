"""Rows of closed activation windows: one host copy per device, then `layer_metrics` and
`arrays` (`act_var_hist`) columns. Runs on the flush thread (activations.py queues the windows).
"""

from __future__ import annotations

from typing import Any

import torch

from trainlight.collectors.problems import Problems
from trainlight.collectors.schema import VAR_HIST_KEY
from trainlight.collectors.signals.unit_stats import KEYS, VAR_HIST_BINS

Window = tuple[int, str, torch.Tensor]  # step, layer, KEYS values then the histogram's bins


def window_rows(windows: list[Window], problems: Problems) -> list[dict[str, list[Any]]]:
    """`layer_metrics` (`KEYS`) and one `arrays` row `act_var_hist` per window."""
    scalars: dict[str, list[Any]] = {"step": [], "layer": [], "key": [], "value": []}
    hists: dict[str, list[Any]] = {"step": [], "layer": [], "values": []}
    for (step, layer, _), values in zip(
        windows, _to_host([w[2] for w in windows], problems), strict=True
    ):
        if values is None:
            continue
        scalars["step"] += [step] * len(KEYS)
        scalars["layer"] += [layer] * len(KEYS)
        scalars["key"] += KEYS
        scalars["value"] += values[: len(KEYS)]
        hists["step"].append(step)
        hists["layer"].append(layer)
        hists["values"].append(values[len(KEYS) :])
    n = len(hists["step"])
    return [
        {"table": ["layer_metrics"] * len(scalars["step"]), **scalars},
        {
            "table": ["arrays"] * n,
            "key": [VAR_HIST_KEY] * n,
            "n_rows": [1] * n,
            "n_cols": [VAR_HIST_BINS] * n,
            **hists,
        },
    ]


def _to_host(tensors: list[torch.Tensor], problems: Problems) -> list[list[float] | None]:
    """Host copies of equal-length vectors: one stack and one transfer per device.

    A device that cannot be read costs its own windows (None, counted), never the others'.
    """
    out: list[list[float] | None] = [None for _ in tensors]
    for device in {t.device for t in tensors}:
        indices = [i for i, t in enumerate(tensors) if t.device == device]
        try:
            stacked = torch.stack([tensors[i] for i in indices]).to("cpu", torch.float64)
        except Exception as exc:  # a lost device, a meta tensor: skip its windows only
            problems.report(
                f"watch_host_copy:{device}",
                f"watch(): {len(indices)} window(s) on {device} could not be read: {exc!r}",
                once_per="watch_host_copy",
            )
            continue
        for i, row in zip(indices, stacked.tolist(), strict=True):
            out[i] = row
    return out
