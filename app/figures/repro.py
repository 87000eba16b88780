"""Reproducibility between replicas: the three prediction-difference figures over time, per mate,
each inside its bootstrap band, stacked: absolute PD, relative PD (on the true label or top
class; the budget, the `repro` badge's threshold, is a dotted line there) and top-1 disagreement.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainlight.app.figures.style import (
    GREY,
    Figure,
    Trace,
    axis,
    base_layout,
    colour,
    compact,
    figure,
    hline,
    transparent,
)
from trainlight.app.store.read.replicas import ReplicaSeries
from trainlight.collectors.health.prediction_difference import Band, PairDifference

# (field of PairDifference, axis id, title, vertical domain), top to bottom
PANELS = (
    ("absolute", "y", "absolute PD", [0.70, 1.0]),
    ("relative", "y2", "relative PD", [0.36, 0.64]),
    ("disagreement", "y3", "top-1 disagreement", [0.0, 0.28]),
)


def pd_figure(series: Sequence[ReplicaSeries], budget: float, uirevision: str) -> Figure:
    """Three stacked panels sharing the step axis; per mate one colour, a line in a band each."""
    traces: list[Trace] = []
    for i, one in enumerate(series):
        for field, yaxis, _, _ in PANELS:
            traces.extend(_band_traces(one, field, yaxis, colour(i)))
    layout = base_layout("Prediction difference between replicas", uirevision, height=560)
    for _, yaxis, title, domain in PANELS:
        name = "yaxis" if yaxis == "y" else f"yaxis{yaxis[1:]}"
        layout[name] = axis(title, domain=domain, rangemode="tozero")
    layout["xaxis"] = axis("step", anchor="y3")
    layout["shapes"] = [hline(budget, GREY, xref="x domain", yref="y2")]
    layout["annotations"] = [
        {
            "text": f"budget {budget:g}",
            "x": 1,
            "y": budget,
            "xref": "x domain",
            "yref": "y2",
            "xanchor": "right",
            "yanchor": "bottom",
            "showarrow": False,
            "font": {"size": 11, "color": GREY},
        }
    ]
    return figure(traces, layout)


def _band_traces(one: ReplicaSeries, field: str, yaxis: str, hue: str) -> list[Trace]:
    """The band (its top invisible, its bottom filled up to it), then the figure's line."""
    bands = [_field(d, field) for d in one.differences]
    steps = compact(one.steps)
    common = {"type": "scatter", "x": steps, "yaxis": yaxis, "legendgroup": one.mate.run_id}
    edge = {**common, "mode": "lines", "line": {"width": 0, "color": hue}, "showlegend": False}
    return [
        {**edge, "y": compact([b.high for b in bands]), "hoverinfo": "skip"},
        {
            **edge,
            "y": compact([b.low for b in bands]),
            "fill": "tonexty",
            "fillcolor": transparent(hue, 0.2),
            "name": f"{one.mate.name} 90% band",
            "hoverinfo": "skip",
        },
        {
            **common,
            "y": compact([b.value for b in bands]),
            "mode": "lines+markers",
            "line": {"color": hue, "width": 2},
            "marker": {"size": 4},
            "name": f"vs {one.mate.name}",
            "showlegend": field == "relative",
        },
    ]


def _field(difference: PairDifference, field: str) -> Band:
    by_field = {
        "absolute": difference.absolute,
        "relative": difference.relative,
        "disagreement": difference.disagreement,
    }
    return by_field[field]
