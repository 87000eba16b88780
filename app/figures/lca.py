"""LCA figures: per-layer allocation (bars, cumulative lines, % helping) and heatmap frames.

Sign convention (Lan et al.): negative LCA lowers the loss (the layer helps, green), positive
raises it (hurts, red). The heatmap's colour scale is symmetric around zero and clipped at the
99th percentile of |LCA| over all of the layer's frames, computed by the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trainlight.app.figures.style import (
    GREEN,
    GREY,
    LCA_COLORSCALE,
    RED,
    base_layout,
    colour,
)
from trainlight.app.store.frames import LcaFrame
from trainlight.app.store.series import Series


def lca_layers_figure(
    totals: Mapping[str, float],
    cumulative: Sequence[Series],
    helping: Sequence[Series],
    *,
    uirevision: str = "",
) -> go.Figure:
    """Bars of cumulative LCA per layer | cumulative LCA over time | % of parameters helping."""
    fig = make_subplots(
        rows=1,
        cols=3,
        column_widths=[0.26, 0.42, 0.32],
        horizontal_spacing=0.08,
        subplot_titles=("cumulative LCA per layer", "cumulative LCA over time", "% helping"),
    )
    base_layout(fig, "", uirevision or "lca", 340)
    fig.update_layout(hovermode="closest", margin={"t": 36})
    layers = list(totals)
    fig.add_trace(
        go.Bar(
            x=[totals[k] for k in layers],
            y=layers,
            orientation="h",
            showlegend=False,
            marker={"color": [GREEN if totals[k] < 0 else RED for k in layers]},
            hovertemplate="%{y}: %{x:.4g}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.update_yaxes(autorange="reversed", type="category", row=1, col=1)
    fig.update_xaxes(title_text="Δ loss (negative helps)", row=1, col=1)
    for i, series in enumerate(cumulative):
        fig.add_trace(_layer_line(series, colour(i), legend=True), row=1, col=2)
    fig.add_hline(y=0, line={"color": GREY, "width": 1}, row=1, col=2)
    for i, series in enumerate(helping):
        j = next((n for n, s in enumerate(cumulative) if s.name == series.name), i)
        fig.add_trace(_layer_line(series, colour(j), legend=False), row=1, col=3)
    fig.add_hline(y=0.5, line={"color": GREY, "dash": "dot", "width": 1}, row=1, col=3)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=3)
    fig.update_xaxes(title_text="step", row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=3)
    fig.update_annotations(font={"size": 12, "color": GREY})
    return fig


def _layer_line(series: Series, color: str, *, legend: bool) -> go.Scatter:
    """One layer's line; the same layer shares colour and legend entry across subplots."""
    return go.Scatter(
        x=series.steps,
        y=series.mean,
        mode="lines",
        name=series.name,
        legendgroup=series.name,
        showlegend=legend,
        line={"color": color},
    )


def heatmap_figure(
    frame: LcaFrame, scale: float, *, uirevision: str = "", compact: bool = False
) -> go.Figure:
    """One frame: rows = output units, columns = inputs (pooled); green helps, red hurts."""
    limit = scale if scale > 0 else 1e-12
    fig = go.Figure(
        go.Heatmap(
            z=frame.rows(),
            zmin=-limit,
            zmax=limit,
            zmid=0,
            colorscale=LCA_COLORSCALE,
            colorbar={
                "title": {"text": "" if compact else "LCA"},
                "thickness": 10 if compact else 12,
            },
            hovertemplate="row %{y}, col %{x}: %{z:.3g}<extra></extra>",
        )
    )
    title = f"{frame.layer} — step {frame.step:,}"
    base_layout(fig, title, uirevision or f"heatmap:{frame.layer}", 260 if compact else 560)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(title_text="" if compact else "input (pooled)", showgrid=False)
    fig.update_yaxes(
        title_text="" if compact else "output unit (pooled)", autorange="reversed", showgrid=False
    )
    return fig


def compare_lca_figure(totals: Sequence[tuple[str, Mapping[str, float]]]) -> go.Figure:
    """Cumulative LCA per layer, one bar group per run (the compare page)."""
    fig = base_layout(go.Figure(), "cumulative LCA per layer", "compare:lca", 340)
    for i, (label, per_layer) in enumerate(totals):
        fig.add_trace(
            go.Bar(
                x=list(per_layer),
                y=list(per_layer.values()),
                name=label,
                marker={"color": colour(i)},
            )
        )
    fig.update_layout(barmode="group", hovermode="closest")
    fig.update_xaxes(title_text="layer", type="category")
    fig.update_yaxes(title_text="Δ loss (negative helps)")
    return fig
