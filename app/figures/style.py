"""The dashboard's plot look, and the small pure helpers every figure shares.

Figures are plain dicts (`{"data": [...], "layout": {...}}`, which `dcc.Graph` accepts as is),
not `plotly.graph_objects`: building a `go.Figure` validates every point in Python, which cost
the run page ~400 ms per render for curves that plotly.js checks again anyway. Numbers go out
as compact numpy arrays (float32 where that loses nothing a plot can show), which Dash's orjson
encoder writes directly and in about half the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Figure = dict[str, Any]  # {"data": [trace, ...], "layout": {...}}: what dcc.Graph draws
Trace = dict[str, Any]

GREEN, AMBER, RED, GREY = "#1a7f37", "#b35900", "#c62828", "#8a8f98"
INK, GRID = "#1f2328", "#eef0f2"
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
_FLOAT32_MAX = 3.0e38
_FLOAT32_TINY = 1.0e-30  # below this float32 loses the value (denormals, then 0)
_INT32_MAX = 2**31 - 1


def plain(text: str) -> str:
    """User text (run names, metric keys, layer names) as Plotly shows it, not as markup:
    Plotly renders `<a>`, `<span style>`, `<br>`… in titles, legends, ticks and hover labels,
    and turns `&lt;`-style entities back into the characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def transparent(hex_colour: str, alpha: float = 0.15) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def figure(data: list[Trace], layout: dict[str, Any]) -> Figure:
    return {"data": data, "layout": layout}


def axis(title: str = "", **extra: Any) -> dict[str, Any]:
    """A quiet axis: light grid, no zero line, optional title."""
    return {"gridcolor": GRID, "zeroline": False, "title": {"text": plain(title)}, **extra}


def base_layout(title: str, uirevision: str, height: int = 300) -> dict[str, Any]:
    """Calm shared layout: white background, light grid, legend below, zoom kept on refresh."""
    return {
        "title": {"text": plain(title), "x": 0.01, "font": {"size": 14}},
        "height": height,
        "margin": {"l": 56, "r": 16, "t": 40, "b": 40},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "uirevision": uirevision,
        "legend": {"orientation": "h", "y": -0.2, "font": {"size": 11}},
        "hovermode": "x unified",
        "font": {"family": "system-ui, sans-serif", "size": 12, "color": INK},
        "colorway": list(PALETTE),
        "xaxis": axis("step"),
        "yaxis": axis(),
    }


def subplot_title(text: str, x: float, y: float) -> dict[str, Any]:
    """A small grey title above one subplot (paper coordinates of its top centre)."""
    return {
        "text": plain(text),
        "x": x,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 12, "color": GREY},
    }


def columns(widths: Sequence[float], spacing: float) -> list[tuple[float, float]]:
    """Horizontal domains of side-by-side subplots: relative `widths`, `spacing` between."""
    room = 1.0 - spacing * (len(widths) - 1)
    total = sum(widths)
    out, left = [], 0.0
    for width in widths:
        right = left + room * width / total
        out.append((left, min(right, 1.0)))
        left = right + spacing
    return out


def vline(
    step: float, text: str, colour_: str, xref: str = "x", yref: str = "y domain"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A dashed vertical line at `step` and its label at the top left (plateau, catch)."""
    shape = {
        "type": "line",
        "xref": xref,
        "yref": yref,
        "x0": step,
        "x1": step,
        "y0": 0,
        "y1": 1,
        "line": {"color": colour_, "dash": "dash", "width": 1.5},
    }
    label = {
        "text": plain(text),
        "x": step,
        "y": 1,
        "xref": xref,
        "yref": yref,
        "xanchor": "right",
        "yanchor": "top",
        "showarrow": False,
        "font": {"size": 11, "color": colour_},
    }
    return shape, label


def hline(
    y: float, colour_: str, dash: str = "dot", xref: str = "x domain", yref: str = "y"
) -> dict[str, Any]:
    """A thin horizontal guide line across the whole plot (thresholds, zero)."""
    return {
        "type": "line",
        "xref": xref,
        "yref": yref,
        "x0": 0,
        "x1": 1,
        "y0": y,
        "y1": y,
        "line": {"color": colour_, "dash": dash, "width": 1},
    }


def ema(values: npt.ArrayLike, weight: float) -> npt.NDArray[np.float64]:
    """Exponential moving average with TensorBoard's debiasing; weight 0 returns the values.

    Each value depends only on earlier ones, so appending points never changes earlier ones
    (the run page patches only a curve's tail on refresh).
    """
    x = np.asarray(values, dtype=np.float64)
    if weight <= 0 or x.size == 0:
        return x.copy()
    rest = 1.0 - weight
    running, last = [], 0.0
    for value in x.tolist():  # a recurrence: no numpy form without scipy
        last = weight * last + rest * value
        running.append(last)
    norm = 1.0 - weight ** np.arange(1, x.size + 1, dtype=np.float64)  # the debiasing
    return np.asarray(running) / norm


def compact(values: npt.ArrayLike) -> npt.NDArray[Any]:
    """A contiguous array in the smallest type that draws the same: int32 for whole numbers,
    float32 for values within its range, float64 otherwise (huge or tiny magnitudes)."""
    x = np.ascontiguousarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return x
    magnitude = np.abs(finite)
    whole = finite.size == x.size and np.all(finite == np.round(finite))
    if whole and magnitude.max() <= _INT32_MAX:
        return x.astype(np.int32)
    nonzero = magnitude[magnitude > 0]
    if magnitude.max() < _FLOAT32_MAX and (nonzero.size == 0 or nonzero.min() > _FLOAT32_TINY):
        return x.astype(np.float32)
    return x
