"""LCA figures: per-layer allocation (bars, cumulative lines, % helping) and heatmap frames.

Sign convention (Lan et al.): negative LCA lowers the loss (the layer helps, green), positive
raises it (hurts, red). The heatmap's colour scale is symmetric around zero and clipped at the
99th percentile of |LCA| over all of the layer's frames, computed by the store; the frames
themselves travel as 8-bit codes against that scale (`heatmap_codec.py`) and the browser puts
them into the figure built here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trainlight.app.figures.style import (
    GREEN,
    GREY,
    LCA_COLORSCALE,
    RED,
    Figure,
    Trace,
    axis,
    base_layout,
    colour,
    columns,
    compact,
    figure,
    hline,
    plain,
    subplot_title,
)
from trainlight.app.store.read.series import Series

_WIDTHS, _SPACING = (0.26, 0.42, 0.32), 0.08
GAP = "#5b6068"  # behind the heatmap: shows through the cells that hold NaN or ±Inf


def lca_layers_figure(
    totals: Mapping[str, float],
    cumulative: Sequence[Series],
    helping: Sequence[Series],
    *,
    uirevision: str = "",
) -> Figure:
    """Bars of cumulative LCA per layer | cumulative LCA over time | % of parameters helping."""
    layout = _lca_layout(uirevision or "lca", measured_helping=bool(helping))
    layers = list(totals)
    data: list[Trace] = [
        {
            "type": "bar",
            "x": compact([totals[k] for k in layers]),
            "y": [plain(k) for k in layers],
            "orientation": "h",
            "showlegend": False,
            "marker": {"color": [GREEN if totals[k] < 0 else RED for k in layers]},
            "hovertemplate": "%{y}: %{x:.4g}<extra></extra>",
        }
    ]
    data += [_layer_line(s, colour(i), legend=True, axes=2) for i, s in enumerate(cumulative)]
    for i, series in enumerate(helping):
        j = next((n for n, s in enumerate(cumulative) if s.name == series.name), i)
        data.append(_layer_line(series, colour(j), legend=False, axes=3))
    return figure(data, layout)


def _lca_layout(uirevision: str, *, measured_helping: bool) -> dict[str, Any]:
    """Three side-by-side subplots with their titles and guide lines (0, and 50% helping)."""
    layout = base_layout("", uirevision, 340)
    (a0, a1), (b0, b1), (c0, c1) = columns(_WIDTHS, _SPACING)
    layout |= {
        "hovermode": "closest",
        "margin": {**layout["margin"], "t": 36},
        # under the line plots, clear of the bar chart's axis title
        "legend": {**layout["legend"], "x": b0, "xanchor": "left"},
        "xaxis": axis("Δ loss (negative helps)", domain=[a0, a1], anchor="y"),
        "yaxis": axis("", anchor="x", autorange="reversed", type="category"),
        "xaxis2": axis("step", domain=[b0, b1], anchor="y2"),
        "yaxis2": axis("", anchor="x2"),
        "xaxis3": axis("step", domain=[c0, c1], anchor="y3", visible=measured_helping),
        "yaxis3": axis("", anchor="x3", range=[0, 1], tickformat=".0%", visible=measured_helping),
        "annotations": [
            subplot_title("cumulative LCA per layer", (a0 + a1) / 2, 1.0),
            subplot_title("cumulative LCA over time", (b0 + b1) / 2, 1.0),
            subplot_title("% helping", (c0 + c1) / 2, 1.0),
        ],
        "shapes": [hline(0, GREY, "solid", "x2 domain", "y2")],
    }
    if measured_helping:
        layout["shapes"].append(hline(0.5, GREY, "dot", "x3 domain", "y3"))
    else:  # older runs, or rows from elsewhere: say so rather than draw empty axes
        note = subplot_title("not measured", (c0 + c1) / 2, 0.5) | {"yanchor": "middle"}
        layout["annotations"].append(note)
    return layout


def _layer_line(series: Series, color: str, *, legend: bool, axes: int) -> Trace:
    """One layer's line; the same layer shares colour and legend entry across subplots."""
    return {
        "type": "scatter",
        "x": compact(series.steps),
        "y": compact(series.mean),
        "xaxis": f"x{axes}",
        "yaxis": f"y{axes}",
        "mode": "lines",
        "name": plain(series.name),
        "legendgroup": series.name,
        "showlegend": legend,
        "line": {"color": color},
    }


def heatmap_figure(layer: str, *, uirevision: str = "", compact_view: bool = False) -> Figure:
    """One layer's heatmap, frame to come: rows = output units, columns = inputs (pooled).

    The server sends this once per layer shown; each animation tick then sends only the frame
    (`heatmap_codec.QuantisedFrame.payload`), which the browser decodes into `z` (values),
    `text` (their hover labels), the colour range ±scale and `meta` (the scale note), and the
    title. Green helps, red hurts; non-finite cells are gaps on a dark background, never a
    colour of the scale, and hover says what they are.
    """
    heat: Trace = {
        "type": "heatmap",
        "z": [],
        "zmin": -1.0,
        "zmax": 1.0,
        "zmid": 0,
        "colorscale": LCA_COLORSCALE,
        "hoverongaps": True,
        "meta": [""],
        "colorbar": {
            "title": {"text": "%{meta[0]}" if compact_view else "LCA<br>%{meta[0]}"},
            "thickness": 10 if compact_view else 12,
        },
        "hovertemplate": "row %{y}, col %{x}: %{text}<extra>%{meta[0]}</extra>",
    }
    layout = base_layout(layer, uirevision or f"heatmap:{layer}", 260 if compact_view else 560)
    layout["hovermode"] = "closest"
    layout["plot_bgcolor"] = GAP
    layout["xaxis"] = axis("" if compact_view else "input (pooled)", showgrid=False)
    layout["yaxis"] = axis(
        "" if compact_view else "output unit (pooled)", autorange="reversed", showgrid=False
    )
    return figure([heat], layout)


def heatmap_title(layer: str, step: int) -> str:
    return plain(f"{layer} — step {step:,}")  # into the Plotly title, as text


def compare_lca_figure(totals: Sequence[tuple[str, Mapping[str, float]]]) -> Figure:
    """Cumulative LCA per layer, one bar group per run (the compare page)."""
    layout: dict[str, Any] = base_layout("cumulative LCA per layer", "compare:lca", 340)
    layout |= {
        "barmode": "group",
        "hovermode": "closest",
        "xaxis": axis("layer", type="category"),
        "yaxis": axis("Δ loss (negative helps)"),
    }
    data = [
        {
            "type": "bar",
            "x": [plain(k) for k in per_layer],
            "y": compact(list(per_layer.values())),
            "name": plain(label),
            "marker": {"color": colour(i)},
        }
        for i, (label, per_layer) in enumerate(totals)
    ]
    return figure(data, layout)
