"""Evidence of the `progress` verdict: the run's step rate over its steps, with where the rule
found it stalled (red line, how long) or slowed (amber line, by how much).

The rate comes from the wall times of the main loss's rows; the marks are the rule's own
findings (the `progress/…` rows it recorded while judging).
"""

from __future__ import annotations

from trainlight.app.figures.style import (
    AMBER,
    RED,
    Figure,
    base_layout,
    colour,
    compact,
    figure,
    vline,
)
from trainlight.app.store.read.series import StepClock


def progress_figure(clock: StepClock, *, uirevision: str = "") -> Figure:
    layout = base_layout("steps per second", uirevision or "progress")
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "steps/s",
            "x": compact(clock.steps),
            "y": compact(clock.rates),
            "line": {"color": colour(0), "width": 2},
        }
    ]
    lines = [vline(step, f"stalled {seconds / 60:.1f} min", RED) for step, seconds in clock.stalls]
    lines += [vline(step, f"{factor:.1f}x slower", AMBER) for step, factor in clock.slowdowns]
    layout["shapes"] = [shape for shape, _ in lines]
    layout["annotations"] = [label for _, label in lines]
    layout["yaxis"]["rangemode"] = "tozero"
    return figure(data, layout)


def system_figure(clock: StepClock, *, uirevision: str = "") -> Figure | None:
    """The process's sampled figures (CPU %, memory, CUDA memory), one line each; None when
    the run recorded none."""
    if not clock.system:
        return None
    layout = base_layout("system (sampled every few seconds)", uirevision or "system")
    layout["showlegend"] = True
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name.removeprefix("system/"),
            "x": [step for step, _ in points],
            "y": [value for _, value in points],
            "line": {"color": colour(i), "width": 1.5},
        }
        for i, (name, points) in enumerate(sorted(clock.system.items()))
    ]
    return figure(data, layout)
