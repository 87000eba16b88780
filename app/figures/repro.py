"""Reproducibility between replicas: PD over time per mate, with its bootstrap band, and the
top-1 disagreement rate below it. The budget (the `repro` badge's threshold) is a dotted line."""

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
from trainlight.app.store.replicas import ReplicaSeries


def pd_figure(series: Sequence[ReplicaSeries], budget: float, uirevision: str) -> Figure:
    """Top: relative PD per mate (line) inside its band (filled); bottom: top-1 disagreement."""
    traces: list[Trace] = []
    for i, one in enumerate(series):
        traces.extend(_mate_traces(one, colour(i)))
    layout = base_layout("Prediction difference between replicas", uirevision, height=420)
    layout["yaxis"] = axis("relative PD", domain=[0.42, 1.0], rangemode="tozero")
    layout["yaxis2"] = axis("top-1 disagreement", domain=[0.0, 0.3], rangemode="tozero")
    layout["xaxis"] = axis("step", anchor="y2")
    layout["shapes"] = [hline(budget, GREY, xref="x domain", yref="y")]
    layout["annotations"] = [
        {
            "text": f"budget {budget:g}",
            "x": 1,
            "y": budget,
            "xref": "x domain",
            "yref": "y",
            "xanchor": "right",
            "yanchor": "bottom",
            "showarrow": False,
            "font": {"size": 11, "color": GREY},
        }
    ]
    return figure(traces, layout)


def _mate_traces(one: ReplicaSeries, hue: str) -> list[Trace]:
    steps = compact(one.steps)
    name = one.mate.name
    group = one.mate.run_id
    return [
        {  # the band: its top first (invisible), then its bottom filled up to it
            "type": "scatter",
            "x": steps,
            "y": compact([d.pd_high for d in one.differences]),
            "mode": "lines",
            "line": {"width": 0, "color": hue},
            "legendgroup": group,
            "showlegend": False,
            "hoverinfo": "skip",
        },
        {
            "type": "scatter",
            "x": steps,
            "y": compact([d.pd_low for d in one.differences]),
            "mode": "lines",
            "line": {"width": 0, "color": hue},
            "fill": "tonexty",
            "fillcolor": transparent(hue, 0.2),
            "legendgroup": group,
            "name": f"{name} 95% band",
            "showlegend": False,
            "hoverinfo": "skip",
        },
        {
            "type": "scatter",
            "x": steps,
            "y": compact([d.pd for d in one.differences]),
            "mode": "lines+markers",
            "line": {"color": hue, "width": 2},
            "marker": {"size": 5},
            "legendgroup": group,
            "name": f"PD vs {name}",
        },
        {
            "type": "scatter",
            "x": steps,
            "y": compact([d.disagreement for d in one.differences]),
            "yaxis": "y2",
            "mode": "lines",
            "line": {"color": hue, "width": 1.5, "dash": "dot"},
            "legendgroup": group,
            "name": f"disagreement vs {name}",
        },
    ]
