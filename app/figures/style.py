"""The dashboard's plot look and the small pure helpers every figure shares."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

GREEN, AMBER, RED, GREY = "#1a7f37", "#b35900", "#c62828", "#8a8f98"
STATE_COLOURS = {"green": GREEN, "amber": AMBER, "red": RED, "grey": GREY}
# Colour-blind-friendly qualitative palette (Okabe-Ito, without yellow).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
# LCA: negative = helping (green), positive = hurting (red), zero = white.
LCA_COLORSCALE = [
    [0.0, "#1b7837"],
    [0.25, "#7fbf7b"],
    [0.5, "#f7f7f7"],
    [0.75, "#ef8a62"],
    [1.0, "#b2182b"],
]


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def base_layout(fig: go.Figure, title: str, uirevision: str, height: int = 300) -> go.Figure:
    """Calm shared layout: white background, light grid, legend on top, zoom kept on refresh."""
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}},
        height=height,
        margin={"l": 56, "r": 16, "t": 40, "b": 40},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        uirevision=uirevision,
        legend={"orientation": "h", "y": -0.2, "font": {"size": 11}},
        hovermode="x unified",
        font={"family": "system-ui, sans-serif", "size": 12, "color": "#1f2328"},
    )
    fig.update_xaxes(gridcolor="#eef0f2", zeroline=False, title_text="step")
    fig.update_yaxes(gridcolor="#eef0f2", zeroline=False)
    return fig


def ema(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing; weight 0 returns the values."""
    if weight <= 0:
        return list(values)
    out, last, norm = [], 0.0, 0.0
    for value in values:
        last = weight * last + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append(last / norm)
    return out


def step_line(fig: go.Figure, step: int, text: str, colour_: str, **where: int) -> None:
    """A dashed vertical line at `step` with a label (plateau, catch, spike)."""
    fig.add_vline(
        x=step,
        line={"color": colour_, "dash": "dash", "width": 1.5},
        annotation={"text": text, "font": {"size": 11, "color": colour_}},
        annotation_position="top left",
        **where,
    )


def empty_figure(title: str, message: str, uirevision: str) -> go.Figure:
    """A figure that says why there is nothing to draw (instead of a blank box)."""
    fig = base_layout(go.Figure(), title, uirevision, height=200)
    fig.add_annotation(
        text=message,
        showarrow=False,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        font={"color": GREY, "size": 13},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig
