"""Evidence of the `gradients` verdict: per-layer gradient norms and update ratios over steps as
heatmaps (log10 colour), with the cells the rule finds out of range marked.

The marks call the rule's own `findings` on each plotted column, with each layer's early level
taken from its first plotted readings, so a marked cell is one the rule would flag (on a
downsampled run a column is a bucket's mean: the marks then show where, not every reading).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainlight.app.figures.style import RED, Figure, base_layout, compact, figure, plain
from trainlight.app.store.read.series import Series
from trainlight.collectors.health.rules.gradients import findings
from trainlight.collectors.health.settings import HealthSettings

HEATMAP_HEIGHT_PER_LAYER = 18
RATIO_KINDS = ("moving",)  # what the update-ratio map marks; the gradient map marks the rest


def gradient_figures(
    grads: Sequence[Series],
    ratios: Sequence[Series],
    counts: Sequence[Series],
    settings: HealthSettings,
    uirevision: str,
) -> tuple[Figure, Figure | None]:
    """(gradient-norm heatmap, update-ratio heatmap or None when no update was measured)."""
    steps = _columns(grads)
    norm_map = _Map(grads, steps)
    ratio_map = _Map(ratios, steps)
    early = norm_map.early_levels(settings.gradients_baseline)
    sizes = {s.name: float(s.mean[-1]) for s in counts if len(s.mean)}
    for col, step in enumerate(steps):
        for found in findings(norm_map.at(col), ratio_map.at(col), early, sizes, settings):
            marked = ratio_map if found.kind in RATIO_KINDS else norm_map
            marked.marks.append((step, found.layer, found.words()))
    norms = _heatmap("gradient norm per layer (log10)", steps, norm_map, uirevision)
    if not ratios:
        return norms, None
    return norms, _heatmap("update ratio |Δθ|/|θ| per layer (log10)", steps, ratio_map, uirevision)


class _Map:
    """One heatmap's cells: a row per layer, a column per step (NaN where none), and its marks."""

    def __init__(self, series: Sequence[Series], steps: list[float]) -> None:
        where = {step: i for i, step in enumerate(steps)}
        self.layers = [s.name for s in series]
        self.rows: list[list[float]] = []
        for s in series:
            row = [math.nan] * len(steps)
            for x, y in zip(s.steps.tolist(), s.mean.tolist(), strict=True):
                row[where[float(x)]] = y
            for x, y in s.nonfinite:
                if float(x) in where:
                    row[where[float(x)]] = y
            self.rows.append(row)
        self.marks: list[tuple[float, str, str]] = []

    def at(self, col: int) -> dict[str, float]:
        return {
            layer: row[col]
            for layer, row in zip(self.layers, self.rows, strict=True)
            if row[col] == row[col]
        }

    def early_levels(self, need: int) -> dict[str, float]:
        """Each layer's median of its first `need` positive readings (the rule's early level)."""
        levels = {}
        for layer, row in zip(self.layers, self.rows, strict=True):
            first = [x for x in row if math.isfinite(x) and x > 0][:need]
            if len(first) == need:
                levels[layer] = statistics.median(first)
        return levels


def _columns(series: Sequence[Series]) -> list[float]:
    return sorted({float(x) for s in series for x in s.steps})


def _heatmap(title: str, steps: list[float], cells: _Map, uirevision: str) -> Figure:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(np.asarray(cells.rows, dtype=np.float64))
    z[~np.isfinite(z)] = np.nan
    layers, marks = cells.layers, cells.marks
    height = 120 + HEATMAP_HEIGHT_PER_LAYER * len(layers)
    layout = base_layout(title, f"{uirevision}:{title}", height=height)
    layout["yaxis"] = {"automargin": True, "autorange": "reversed", "type": "category"}
    data: list[dict[str, Any]] = [
        {
            "type": "heatmap",
            "x": compact(steps),
            "y": [plain(layer) for layer in layers],
            "z": compact(z),
            "colorscale": "Viridis",
            "colorbar": {"title": {"text": "log10"}},
            "hovertemplate": "step %{x}<br>%{y}: 10^%{z:.2f}<extra></extra>",
        }
    ]
    if marks:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "out of range",
                "x": [m[0] for m in marks],
                "y": [plain(m[1]) for m in marks],
                "text": [plain(m[2]) for m in marks],
                "marker": {"symbol": "x-thin-open", "size": 7, "color": RED},
                "hovertemplate": "step %{x}: %{text}<extra></extra>",
            }
        )
    return figure(data, layout)
