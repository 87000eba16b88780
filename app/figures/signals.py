"""Evidence plots of the `runaway` and `dead_relu` verdicts.

Guide lines and highlights use the thresholds the run was judged with (its `health=` overrides,
saved with the rules' state), so a line on the plot is the line the verdict used. Undead spikes
are found with the dead_relu rule's own test (count above the median + k·MAD of the layer's
recent windows, MAD floored at one unit), so a highlighted spike is one the rule saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trainlight.app.figures.scalars import series_traces
from trainlight.app.figures.style import (
    AMBER,
    INK,
    RED,
    Figure,
    Trace,
    axis,
    base_layout,
    colour,
    compact,
    figure,
    hline,
    plain,
    subplot_title,
)
from trainlight.app.store.read.series import Series
from trainlight.collectors.health.rules.dead_relu import undead_spikes
from trainlight.collectors.health.settings import HealthSettings

DEFAULTS = HealthSettings()
_ROW_GAP = 0.12  # between the dead and undead plots, as a fraction of the figure


def runaway_figure(
    distance: Series, critical: Series | None, *, smooth: float = 0.0, uirevision: str = ""
) -> Figure:
    """KS distance of generated vs reference per-sample means over time, with its critical value."""
    layout = base_layout("runaway: KS distance to the reference", uirevision or "runaway")
    data = series_traces(distance, colour(0), smooth=smooth, name="KS distance")
    if critical is not None and len(critical.steps):
        data.append(
            {
                "type": "scatter",
                "x": compact(critical.steps),
                "y": compact(critical.mean),
                "mode": "lines",
                "name": "critical (α = 0.01)",
                "line": {"color": AMBER, "dash": "dash", "width": 1.5},
            }
        )
    layout["yaxis"] = axis("KS statistic", rangemode="tozero")
    if distance.nonfinite:
        layout["yaxis2"] = {"overlaying": "y", "range": [0, 1.05], "visible": False}
    return figure(data, layout)


def distribution_figure(
    reference: npt.ArrayLike | None,
    generated: npt.ArrayLike | None,
    *,
    generated_step: int | None = None,
    uirevision: str = "",
) -> Figure:
    """Generated vs reference per-sample means as CDFs, from their stored quantiles.

    Quantiles at evenly spaced probabilities are the inverse CDF, so the CDF is drawn by
    swapping the axes: x = quantile value, y = probability. The KS distance is the largest
    vertical gap between the two curves.
    """
    at = f" at step {generated_step:,}" if generated_step is not None else ""
    layout = base_layout(f"generated vs reference distribution{at}", uirevision or "runaway-cdf")
    layout["hovermode"] = "closest"
    layout["xaxis"] = axis("per-sample mean")
    layout["yaxis"] = axis("cumulative fraction", range=[0, 1.02], tickformat=".0%")
    # Inside, top left: both CDFs rise from the bottom left, so that corner stays empty.
    legend = {"x": 0.01, "y": 0.99, "xanchor": "left", "yanchor": "top"}
    layout["legend"] = {**legend, "bgcolor": "rgba(255,255,255,0.8)", "font": {"size": 11}}
    data = []
    for values, name, line in (
        (reference, "reference (real data)", {"color": INK, "width": 2}),
        (generated, "generated (recent)", {"color": colour(0), "width": 2}),
    ):
        if values is not None and np.size(values) >= 2:
            data.append(_cdf_trace(np.asarray(values, dtype=np.float64), name, line))
    return figure(data, layout)


def _cdf_trace(quantiles: npt.NDArray[np.float64], name: str, line: dict[str, Any]) -> Trace:
    name = plain(name)
    return {
        "type": "scatter",
        "x": compact(quantiles),
        "y": compact(np.linspace(0.0, 1.0, quantiles.size)),
        "mode": "lines",
        "name": name,
        "line": line,
        "hovertemplate": "%{x:.4g}: %{y:.0%} below<extra>" + name + "</extra>",
    }


def dead_figure(
    dead: Sequence[Series],
    undead: Sequence[Series],
    *,
    settings: HealthSettings = DEFAULTS,
    uirevision: str = "",
) -> Figure:
    """Dead fraction per layer (top, with the run's amber/red thresholds) and undead counts per
    layer with the rule's spikes ringed (bottom); the two share the step axis."""
    layout = base_layout("dead_relu: dead and undead units per layer", uirevision or "dead", 460)
    top, bottom = (1 - _ROW_GAP) / 2 + _ROW_GAP, (1 - _ROW_GAP) / 2
    layout |= {
        "hovermode": "closest",
        "xaxis": axis("", anchor="y", matches="x2", showticklabels=False),
        "yaxis": axis("", domain=[top, 1.0], range=[0, 1.02], tickformat=".0%"),
        "xaxis2": axis("step", anchor="y2"),
        "yaxis2": axis("", domain=[0.0, bottom], rangemode="tozero"),
        "annotations": [
            subplot_title(
                f"dead units (fraction; amber ≥ {settings.dead_amber:.0%}, red ≥ "
                f"{settings.dead_red:.0%})",
                0.5,
                1.0,
            ),
            subplot_title(
                f"undead units (count; ringed: > median + {settings.undead_k:g}·MAD)", 0.5, bottom
            ),
        ],
        "shapes": [hline(settings.dead_amber, AMBER), hline(settings.dead_red, RED)],
    }
    data = [_layer_line(s, s.mean, colour(i), legend=True) for i, s in enumerate(dead)]
    for i, series in enumerate(undead):
        shown = next((j for j, d in enumerate(dead) if d.name == series.name), i)
        data.append(_layer_line(series, series.high, colour(shown), legend=False, row=2))
        spikes = undead_spikes(series.steps.tolist(), series.high.tolist(), settings)
        if spikes:
            data.append(_spike_trace(series.name, spikes))
    return figure(data, layout)


def _spike_trace(layer: str, spikes: list[tuple[float, float]]) -> Trace:
    return {
        "type": "scatter",
        "x": compact([s for s, _ in spikes]),
        "y": compact([c for _, c in spikes]),
        "xaxis": "x2",
        "yaxis": "y2",
        "mode": "markers",
        "name": f"{layer} undead spike",
        "legendgroup": layer,
        "marker": {"symbol": "circle-open", "size": 14, "color": RED, "line": {"width": 2.5}},
    }


def _layer_line(
    series: Series,
    values: npt.ArrayLike,
    line_colour: str,
    *,
    legend: bool,
    row: int = 1,
) -> Trace:
    """A layer's line; the undead plot draws each bucket's max so a spike survives downsampling."""
    trace: Trace = {
        "type": "scatter",
        "x": compact(series.steps),
        "y": compact(values),
        "name": series.name,
        "legendgroup": series.name,
        "mode": "lines+markers" if len(series.steps) < 60 else "lines",
        "marker": {"size": 4},
        "showlegend": legend,
        "line": {"color": line_colour, "width": 1.8},
    }
    if row == 2:
        trace |= {"xaxis": "x2", "yaxis": "y2"}
    return trace
