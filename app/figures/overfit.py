"""Evidence of the `overfit` verdict: training and validation loss on one plot, with where the
validation loss was at its best and where the rule first saw it rising.

The marks are the rule's own findings (the `overfit/…` rows it recorded while judging): a
star at the best validation loss, and a dashed line at the step the rise was seen.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainlight.app.figures.scalars import series_traces, steady_range
from trainlight.app.figures.style import AMBER, Figure, base_layout, colour, figure, plain, vline
from trainlight.app.store.read.series import OverfitMark, Series


def overfit_figure(
    train: Series | None,
    val: Series,
    rises: Sequence[OverfitMark],
    *,
    smooth: float = 0.0,
    uirevision: str = "",
) -> Figure:
    title = f"{train.name} vs {val.name}" if train is not None else val.name
    layout = base_layout(title, uirevision or title)
    layout["showlegend"] = True
    data = series_traces(train, colour(0), smooth=smooth, name=train.name) if train else []
    data += series_traces(val, colour(1), smooth=0.0, name=val.name, band=False)
    data.append(
        {
            "type": "scatter",
            "mode": "markers",
            "name": f"best {val.name}",
            "x": [mark.best_step for mark in rises],
            "y": [mark.best for mark in rises],
            "marker": {"symbol": "star", "size": 12, "color": colour(1)},
            "text": [plain(f"best {mark.best:.4g} at step {mark.best_step:,}") for mark in rises],
            "hovertemplate": "%{text}<extra></extra>",
        }
    )
    lines = [vline(mark.seen_at, f"rising since {mark.best_step:,}", AMBER) for mark in rises]
    layout["shapes"] = [shape for shape, _ in lines]
    layout["annotations"] = [label for _, label in lines]
    layout["yaxis"].update(steady_range(*(s for s in (train, val) if s is not None)))
    return figure(data, layout)
