"""Scalar curves: mean line with the min/max envelope of each bucket, non-finite points marked.

The plateau and catch steps of the `catch` signal are drawn as vertical lines, so the verdict's
evidence sits on the curve it was read from. Non-finite values are drawn as red crosses on the
top edge (a NaN has no height, but it is the most important point of the plot).

The envelope is two traces (low, then high filled down to it) rather than one closed polygon,
so that every array of every trace only grows at its end while a run is live: the run page can
then send the new tail of a curve instead of the whole figure (see `patching.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainlight.app.figures.style import (
    GREEN,
    GREY,
    RED,
    Figure,
    Trace,
    base_layout,
    colour,
    compact,
    ema,
    figure,
    plain,
    transparent,
    vline,
)
from trainlight.app.store.read.series import CatchMarks, Series

NO_MARKS = CatchMarks()
# The crosses sit on a hidden second y axis, at its top edge, whatever the curve's range.
NONFINITE_AXIS = {"overlaying": "y", "range": [0, 1.05], "visible": False}


def scalar_figure(
    series: Series,
    *,
    smooth: float = 0.0,
    marks: CatchMarks = NO_MARKS,
    uirevision: str = "",
    title: str | None = None,
) -> Figure:
    layout = base_layout(title or series.name, uirevision or series.name)
    data = series_traces(series, colour(0), smooth=smooth, name=series.name)
    layout["shapes"], layout["annotations"] = mark_lines(marks)
    if series.nonfinite:
        layout["yaxis2"] = NONFINITE_AXIS
    layout["yaxis"].update(steady_range(series))
    return figure(data, layout)


def overlay_figure(
    key: str, runs: Sequence[tuple[str, Series]], *, smooth: float = 0.0, uirevision: str = ""
) -> Figure:
    """One key of several runs on one plot (the compare page); runs named by their labels."""
    layout = base_layout(key, uirevision or f"compare:{key}")
    data = []
    for i, (label, series) in enumerate(runs):
        data += series_traces(series, colour(i), smooth=smooth, name=label, band=False)
    layout["showlegend"] = True  # even for one run: the legend names it
    layout["yaxis"].update(steady_range(*(series for _, series in runs)))
    if any(series.nonfinite for _, series in runs):
        layout["yaxis2"] = NONFINITE_AXIS
    return figure(data, layout)


def series_traces(
    series: Series, line_colour: str, *, smooth: float, name: str, band: bool = True
) -> list[Trace]:
    """The min/max band when buckets hold several points, the raw line when smoothing, the
    (smoothed) mean line, and the crosses of its non-finite values."""
    name = plain(name)
    steps = compact(series.steps)
    traces = band_traces(series, line_colour, name) if band and series.downsampled else []
    if smooth > 0:
        traces.append(
            {
                "type": "scatter",
                "x": steps,
                "y": compact(series.mean),
                "mode": "lines",
                "name": f"{name} (raw)",
                "line": {"color": line_colour, "width": 1},
                "opacity": 0.25,
                "showlegend": False,
            }
        )
    traces.append(
        {
            "type": "scatter",
            "x": steps,
            "y": compact(ema(series.mean, smooth)),
            "mode": "lines",
            "name": name,
            "line": {"color": line_colour, "width": 2},
        }
    )
    if series.nonfinite:
        traces.append(nonfinite_trace(series, name))
    return traces


def band_traces(series: Series, line_colour: str, name: str) -> list[Trace]:
    """The min/max envelope of the buckets: the low edge, then the high edge filled down to it."""
    edge: dict[str, Any] = {"width": 0, "color": line_colour}
    common: Trace = {"type": "scatter", "x": compact(series.steps), "mode": "lines", "line": edge}
    common |= {"hoverinfo": "skip", "showlegend": False}
    low = {**common, "y": compact(series.low), "name": f"{name} min"}
    high = {**common, "y": compact(series.high), "name": f"{name} min/max", "fill": "tonexty"}
    return [low, high | {"fillcolor": transparent(line_colour)}]


def nonfinite_trace(series: Series, name: str) -> Trace:
    """Red crosses at the top edge, one per bucket holding a NaN/±Inf, the value as hover."""
    return {
        "type": "scatter",
        "x": compact([s for s, _ in series.nonfinite]),
        "y": compact([1.0] * len(series.nonfinite)),
        "yaxis": "y2",
        "mode": "markers",
        "name": f"{name} NaN/Inf",
        "marker": {"symbol": "x", "color": RED, "size": 9},
        "text": [word(v) for _, v in series.nonfinite],
        "hovertemplate": "step %{x}: %{text}<extra></extra>",
    }


def mark_lines(marks: CatchMarks) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(shapes, annotations) of the plateau and catch steps."""
    found = []
    if marks.plateau_step is not None:
        found.append(vline(marks.plateau_step, f"plateau {marks.plateau_step:,}", GREY))
    if marks.catch_step is not None:
        found.append(vline(marks.catch_step, f"catch {marks.catch_step:,}", GREEN))
    return [shape for shape, _ in found], [label for _, label in found]


def steady_range(*series: Series) -> dict[str, Any]:
    """Y-axis settings: readable ticks, and a fixed range for (nearly) constant series instead
    of magnified float noise."""
    out: dict[str, Any] = {"tickformat": ".4~g", "hoverformat": ".6~g"}
    drawn = [s for s in series if len(s.low)]
    if not drawn:
        return out
    low, high = min(float(s.low.min()) for s in drawn), max(float(s.high.max()) for s in drawn)
    pad = max(abs(high), abs(low), 1e-12) * 0.05
    if high - low < pad * 1e-3:
        out["range"] = [low - pad, high + pad]
    return out


def word(value: float) -> str:
    if value != value:
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"
