"""Layer sizing: a layer's unit activation variances over training, as a heatmap.

x is the step (window end), y the log10 variance bin, colour the number of units in it. The
bottom row (below 10**VAR_HIST_LOG10[0]) is near-zero variance: units that carry nothing. Its
share in the latest window goes in the title as the "oversized layer" hint (informational).
"""

from __future__ import annotations

import math

import numpy as np

from trainlight.app.figures.style import Figure, axis, base_layout, compact, figure
from trainlight.app.store.read.layer_sizing import LayerHistogram, bin_centres
from trainlight.collectors.schema import VAR_HIST_LOG10

HEAT_COLORSCALE = [[0.0, "#ffffff"], [0.2, "#c6dbef"], [0.6, "#4292c6"], [1.0, "#08306b"]]


def near_zero_note(histogram: LayerHistogram) -> str:
    """'31% of units near-zero variance' for the latest window with units counted, or ''."""
    shares = histogram.near_zero
    finite = shares[np.isfinite(shares)]
    if finite.size == 0:
        return ""
    return f"{finite[-1]:.0%} of units near-zero variance"


def variance_heatmap(histogram: LayerHistogram, uirevision: str) -> Figure:
    """Units per variance bin (y, log10) per window (x) for one layer."""
    note = near_zero_note(histogram)
    title = f"{histogram.layer}: unit activation variance" + (f" — {note}" if note else "")
    layout = base_layout(title, uirevision, height=320)
    centres = bin_centres()
    first = math.ceil(VAR_HIST_LOG10[0]) + 2  # room for the "<" label of the near-zero row
    ticks = list(range(first, math.floor(VAR_HIST_LOG10[-1]) + 1, 2))
    layout["yaxis"] = axis(
        "variance (log10)",
        tickvals=[centres[0], *ticks],
        ticktext=[f"<{VAR_HIST_LOG10[0]:g}", *[str(t) for t in ticks]],
    )
    layout["hovermode"] = "closest"
    trace = {
        "type": "heatmap",
        "x": compact(histogram.steps),
        "y": compact(centres),
        "z": compact(histogram.counts.T),
        "colorscale": HEAT_COLORSCALE,
        "colorbar": {"title": {"text": "units"}},
        "hovertemplate": "step %{x}<br>log10 var ≈ %{y:.2f}<br>%{z} units<extra></extra>",
    }
    return figure([trace], layout)
