"""Evidence of the `spike` verdict: the main loss with the spikes the rule found marked.

The marks are the rule's own findings (the `spike/…` rows it recorded while judging), not a
second detector run on the plotted, downsampled curve: a marked spike is one the badge counted.
Each onset is a triangle at its first value, with the level it rose above; a dotted line joins
it to the level at the step the loss came back (none while it has not).
"""

from __future__ import annotations

from collections.abc import Sequence

from trainlight.app.figures.scalars import scalar_figure
from trainlight.app.figures.style import AMBER, GREY, RED, Figure, plain
from trainlight.app.store.read.series import Series, SpikeMark


def spike_figure(
    loss: Series, spikes: Sequence[SpikeMark], *, smooth: float = 0.0, uirevision: str = ""
) -> Figure:
    fig = scalar_figure(loss, smooth=smooth, uirevision=uirevision, title=f"{loss.name}: spikes")
    fig["data"].append(
        {
            "type": "scatter",
            "mode": "markers",
            "name": "spike",
            "x": [mark.step for mark in spikes],
            "y": [mark.peak for mark in spikes],
            "marker": {"symbol": "triangle-up", "size": 11, "color": RED},
            "text": [_describe(mark) for mark in spikes],
            "hovertemplate": "%{text}<extra></extra>",
        }
    )
    for mark in spikes:
        end = mark.back if mark.back is not None else mark.step
        fig["data"].append(
            {
                "type": "scatter",
                "mode": "lines",
                "showlegend": False,
                "hoverinfo": "skip",
                "x": [mark.step, end],
                "y": [mark.level, mark.level],
                "line": {"color": GREY if mark.back is not None else AMBER, "dash": "dot"},
            }
        )
    return fig


def _describe(mark: SpikeMark) -> str:
    back = f"back at step {mark.back:,}" if mark.back is not None else "not back yet"
    return plain(
        f"spike at step {mark.step:,}: {mark.peak:.4g} over level {mark.level:.4g}, {back}"
    )
