"""Scalar curves: mean line with the min/max envelope of each bucket, non-finite points marked.

The plateau and catch steps of the `catch` signal are drawn as vertical lines, so the verdict's
evidence sits on the curve it was read from. Non-finite values are drawn as red crosses on the
top edge (a NaN has no height, but it is the most important point of the plot).
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from trainlight.app.figures.style import GREEN, RED, base_layout, colour, ema, step_line
from trainlight.app.store.series import CatchMarks, Series

NO_MARKS = CatchMarks()


def scalar_figure(
    series: Series,
    *,
    smooth: float = 0.0,
    marks: CatchMarks = NO_MARKS,
    uirevision: str = "",
    title: str | None = None,
) -> go.Figure:
    fig = base_layout(go.Figure(), title or series.name, uirevision or series.name)
    add_series(fig, series, colour(0), smooth=smooth, name=series.name)
    add_marks(fig, marks)
    _steady_axis(fig, series)
    return fig


def overlay_figure(
    key: str, runs: Sequence[tuple[str, Series]], *, smooth: float = 0.0, uirevision: str = ""
) -> go.Figure:
    """One key of several runs on one plot (the compare page); runs named by their labels."""
    fig = base_layout(go.Figure(), key, uirevision or f"compare:{key}")
    for i, (label, series) in enumerate(runs):
        add_series(fig, series, colour(i), smooth=smooth, name=label, band=False)
    fig.update_layout(showlegend=True)  # even for one run: the legend names it
    return fig


def add_series(
    fig: go.Figure,
    series: Series,
    line_colour: str,
    *,
    smooth: float,
    name: str,
    band: bool = True,
) -> None:
    """The mean line (smoothed), its min/max band when buckets hold several points, and crosses."""
    downsampled = series.count > len(series.steps)
    if band and downsampled:
        fig.add_trace(
            go.Scatter(
                x=list(series.steps) + list(reversed(series.steps)),
                y=list(series.high) + list(reversed(series.low)),
                fill="toself",
                fillcolor=_transparent(line_colour),
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                name=f"{name} min/max",
            )
        )
    if smooth > 0:
        fig.add_trace(
            go.Scatter(
                x=series.steps,
                y=series.mean,
                mode="lines",
                name=f"{name} (raw)",
                line={"color": line_colour, "width": 1},
                opacity=0.25,
                showlegend=False,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=series.steps,
            y=ema(series.mean, smooth),
            mode="lines",
            name=name,
            line={"color": line_colour, "width": 2},
        )
    )
    if series.nonfinite:
        fig.add_trace(
            go.Scatter(
                x=[s for s, _ in series.nonfinite],
                y=[1.0] * len(series.nonfinite),
                yaxis="y2",
                mode="markers",
                name=f"{name} NaN/Inf",
                marker={"symbol": "x", "color": RED, "size": 9},
                text=[_word(v) for _, v in series.nonfinite],
                hovertemplate="step %{x}: %{text}<extra></extra>",
            )
        )
        fig.update_layout(yaxis2={"overlaying": "y", "range": [0, 1.05], "visible": False})


def add_marks(fig: go.Figure, marks: CatchMarks) -> None:
    if marks.plateau_step is not None:
        step_line(fig, marks.plateau_step, f"plateau {marks.plateau_step:,}", "#6b7280")
    if marks.catch_step is not None:
        step_line(fig, marks.catch_step, f"catch {marks.catch_step:,}", GREEN)


def _steady_axis(fig: go.Figure, series: Series) -> None:
    """A (nearly) constant series gets a readable y range instead of magnified float noise."""
    fig.update_yaxes(tickformat=".4~g", hoverformat=".6~g")
    if not series.low:
        return
    low, high = min(series.low), max(series.high)
    pad = max(abs(high), abs(low), 1e-12) * 0.05
    if high - low < pad * 1e-3:
        fig.update_yaxes(range=[low - pad, high + pad])


def _word(value: float) -> str:
    if value != value:
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def _transparent(hex_colour: str, alpha: float = 0.15) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"
