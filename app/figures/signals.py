"""Evidence plots of the `runaway` and `dead_relu` verdicts.

Undead spikes are found with the dead_relu rule's own test (count above the median + k·MAD of the
layer's recent windows, MAD floored at one unit), so a highlighted spike is one the rule saw.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trainlight.app.figures.scalars import add_series
from trainlight.app.figures.style import AMBER, GREY, RED, base_layout, colour
from trainlight.app.store.series import Series
from trainlight.collectors.health.settings import HealthSettings

DEFAULTS = HealthSettings()


def runaway_figure(
    distance: Series, critical: Series, *, smooth: float = 0.0, uirevision: str = ""
) -> go.Figure:
    """KS distance of generated vs reference per-sample means over time, with its critical value."""
    fig = base_layout(go.Figure(), "runaway: KS distance to the reference", uirevision or "runaway")
    add_series(fig, distance, colour(0), smooth=smooth, name="KS distance")
    if critical.steps:
        fig.add_trace(
            go.Scatter(
                x=critical.steps,
                y=critical.mean,
                mode="lines",
                name="critical (α = 0.01)",
                line={"color": AMBER, "dash": "dash", "width": 1.5},
            )
        )
    fig.update_yaxes(title_text="KS statistic", rangemode="tozero")
    return fig


def undead_spikes(
    steps: Sequence[float], counts: Sequence[float], settings: HealthSettings = DEFAULTS
) -> list[tuple[float, float]]:
    """(step, count) of the windows the dead_relu rule would call an undead spike."""
    history: list[float] = []
    spikes = []
    for step, count in zip(steps, counts, strict=True):
        if len(history) >= settings.undead_min_history:
            median = statistics.median(history)
            mad = statistics.median(abs(x - median) for x in history)
            if count > median + settings.undead_k * max(mad, 1.0):
                spikes.append((step, count))
        history.append(count)
        del history[: -settings.undead_history]
    return spikes


def dead_figure(
    dead: Sequence[Series],
    undead: Sequence[Series],
    *,
    settings: HealthSettings = DEFAULTS,
    uirevision: str = "",
) -> go.Figure:
    """Dead fraction per layer (top) and undead counts per layer with spikes ringed (bottom)."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=("dead units (fraction)", "undead units (count)"),
    )
    base_layout(fig, "dead_relu: dead and undead units per layer", uirevision or "dead", 460)
    fig.update_layout(hovermode="closest")
    for i, series in enumerate(dead):
        fig.add_trace(_line(series, series.mean, colour(i), legend=True), row=1, col=1)
    for i, series in enumerate(undead):
        shown = next((j for j, d in enumerate(dead) if d.name == series.name), i)
        fig.add_trace(_line(series, series.high, colour(shown), legend=False), row=2, col=1)
        spikes = undead_spikes(series.steps, series.high, settings)
        if spikes:
            fig.add_trace(
                go.Scatter(
                    x=[s for s, _ in spikes],
                    y=[c for _, c in spikes],
                    mode="markers",
                    name=f"{series.name} undead spike",
                    legendgroup=series.name,
                    marker={
                        "symbol": "circle-open",
                        "size": 14,
                        "color": RED,
                        "line": {"width": 2.5},
                    },
                ),
                row=2,
                col=1,
            )
    for threshold, colour_ in ((settings.dead_amber, AMBER), (settings.dead_red, RED)):
        fig.add_hline(y=threshold, line={"color": colour_, "dash": "dot", "width": 1}, row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="", row=1, col=1)
    fig.update_annotations(font={"size": 12, "color": GREY})
    return fig


def _line(series: Series, values: Sequence[float], line_colour: str, *, legend: bool) -> go.Scatter:
    """A layer's line; the undead plot draws each bucket's max so a spike survives downsampling."""
    return go.Scatter(
        x=series.steps,
        y=values,
        name=series.name,
        legendgroup=series.name,
        mode="lines+markers" if len(series.steps) < 60 else "lines",
        marker={"size": 4},
        showlegend=legend,
        line={"color": line_colour, "width": 1.8},
    )
