"""Loss landscape figures: the 1-D slice animated over training, sharpness over steps, and the
offline 2-D surface as a contour.

The animation is all in the figure (Plotly frames, a play/pause menu and a step slider), so it
plays in the browser without a callback per frame. The y range is fixed over all frames
(finite losses only), so a slice that deepens is seen to deepen instead of being rescaled.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainlight.app.figures.style import (
    PALETTE,
    Figure,
    axis,
    base_layout,
    compact,
    figure,
)
from trainlight.app.store.read.landscape import LandscapeSlices
from trainlight.app.store.read.surfaces import StoredSurface

FRAME_MS = 300


def slice_animation(slices: LandscapeSlices, uirevision: str) -> Figure:
    """The latest slice drawn, every slice a frame named by its step, play button and slider."""
    alphas = compact(slices.alphas)
    frames = [
        {
            "name": str(step),
            "data": [_slice_trace(alphas, slices.losses[i], step)],
        }
        for i, step in enumerate(slices.steps)
    ]
    layout = base_layout("Loss along the run's direction, over training", uirevision, height=380)
    layout["xaxis"] = axis("α (filter-normalised direction)")
    layout["yaxis"] = axis("probe loss", range=_loss_range(slices.losses))
    layout["hovermode"] = "closest"
    layout["margin"] = {**layout["margin"], "b": 120}
    layout["updatemenus"] = [_play_menu()]
    layout["sliders"] = [_step_slider(slices.steps)]
    last = len(slices.steps) - 1
    return {
        **figure([_slice_trace(alphas, slices.losses[last], slices.steps[last])], layout),
        "frames": frames,
    }


def sharpness_figure(slices: LandscapeSlices, uirevision: str) -> Figure:
    """Curvature of the slice at α = 0 over training (higher: a sharper minimum)."""
    layout = base_layout("Sharpness (curvature at α = 0)", uirevision)
    trace = {
        "type": "scatter",
        "x": compact(slices.sharpness_steps),
        "y": compact(slices.sharpness),
        "mode": "lines+markers",
        "line": {"color": PALETTE[0], "width": 2},
        "name": "sharpness",
    }
    return figure([trace], layout)


def surface_contour(surface: StoredSurface, uirevision: str) -> Figure:
    """The 2-D surface around the checkpoint: contour of the probe loss over (α, β)."""
    layout = base_layout("Loss surface around the checkpoint (offline)", uirevision, height=420)
    layout["xaxis"] = axis("α (the slices' direction)")
    layout["yaxis"] = axis("β (a second direction)", scaleanchor="x")
    layout["hovermode"] = "closest"
    trace = {
        "type": "contour",
        "x": compact(surface.alphas),
        "y": compact(surface.betas),
        "z": surface.losses,
        "colorscale": "Viridis",
        "contours": {"coloring": "heatmap", "showlabels": True},
        "colorbar": {"title": {"text": "loss"}},
        "connectgaps": False,
        "hovertemplate": "α %{x:.3g}<br>β %{y:.3g}<br>loss %{z:.4g}<extra></extra>",
    }
    return figure([trace], layout)


def _slice_trace(alphas: Any, losses: Any, step: int) -> dict[str, Any]:
    return {
        "type": "scatter",
        "x": alphas,
        "y": compact(losses),
        "mode": "lines+markers",
        "line": {"color": PALETTE[0], "width": 2},
        "marker": {"size": 5},
        "name": f"step {step:,}",
    }


def _loss_range(losses: np.ndarray) -> list[float] | None:
    finite = losses[np.isfinite(losses)]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    return [low - pad, high + pad]


def _play_menu() -> dict[str, Any]:
    still = {"duration": 0}  # no tweening between slices: it draws points that never existed
    play = {
        "frame": {"duration": FRAME_MS, "redraw": False},
        "fromcurrent": True,
        "transition": still,
    }
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": still}
    return {
        "type": "buttons",
        "direction": "left",
        "showactive": False,
        "x": 0,
        "y": -0.3,
        "xanchor": "left",
        "yanchor": "top",
        "pad": {"t": 8},
        "buttons": [
            {"label": "▶ play", "method": "animate", "args": [None, play]},
            {"label": "❚❚ pause", "method": "animate", "args": [[None], pause]},
        ],
    }


def _step_slider(steps: tuple[int, ...]) -> dict[str, Any]:
    jump = {
        "frame": {"duration": 0, "redraw": False},
        "mode": "immediate",
        "transition": {"duration": 0},
    }
    return {
        "active": len(steps) - 1,
        "x": 0.3,
        "y": -0.22,
        "len": 0.7,
        "xanchor": "left",
        "yanchor": "top",
        "currentvalue": {"prefix": "step ", "xanchor": "right", "font": {"size": 12}},
        "steps": [
            {"label": f"{s:,}", "method": "animate", "args": [[str(s)], jump]} for s in steps
        ],
    }
