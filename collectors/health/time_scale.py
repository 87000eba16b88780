"""Windows and patience on the run's own time scale, for `catch` and `runaway`.

The source's rules are relative: "no catch by the time the content loss levels off", "means still
far off as the content loss levels off". Fixed step counts sized for its 10k-20k-step voice GANs
(windows of 500 steps, patience of 5,000) never reach a verdict on an 800-step run, and would be
far too hasty on a 1M-step one. So every length here is derived from the run itself:

- cadence: the median step gap between the content loss's first `CADENCE_POINTS` readings;
- window: `catch_window_points` readings (window = points x cadence), at least 1/500 of the
  declared length, so a long run is judged in at most ~500 windows;
- levelled off: at a window's close, the content loss's latest half of steps brought less than
  `plateau_rho` of its whole drop so far (a scale-free test: the same curve stretched 10x in steps
  levels off at a 10x later step). Checked from window `baseline_windows + 2` on; once levelled,
  the run stays levelled (a content loss that creeps down again by a few % does not reopen it);
- catch patience: `catch_patience_ratio` x the levelled-off step after it (the adversary gets as
  long again, twice over, as the generator needed to learn the content), at least 2 windows and
  at most 1/5 of the declared length;
- runaway without a content role: red needs `runaway_min_readings` readings and 1/10 of the
  declared length (with one, red waits for the content loss to level off).

The absolute settings (`catch_window`, `catch_patience`, `runaway_patience`) still override.
The declared length is `Monitor(total_steps=...)` or a `total_steps`/`max_steps` config key.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from trainlight.collectors.health.settings import HealthSettings

CADENCE_POINTS = 5  # content readings whose step gaps fix the logging cadence
MIN_WINDOW_FRACTION = 500  # a window covers at least 1/500 of the declared length
MAX_PATIENCE_FRACTION = 5  # catch patience is at most 1/5 of the declared length
RUNAWAY_LENGTH_FRACTION = 10  # runaway (no content role) turns red after 1/10 of it at the earliest
MAX_LEVELS = 512  # per-window content values kept; beyond it every other one is dropped


def cadence(steps: Sequence[int]) -> int:
    """The median positive step gap between readings (1 when there is none)."""
    gaps = [b - a for a, b in itertools.pairwise(steps) if b > a]
    return max(1, round(statistics.median(gaps))) if gaps else 1


def window_steps(settings: HealthSettings, step_gap: int, planned: int | None) -> int:
    """Steps per catch window: the override, else points x cadence (>= 1/500 of the length)."""
    if settings.catch_window is not None:
        return settings.catch_window
    floor = -(-planned // MIN_WINDOW_FRACTION) if planned else 1
    return max(settings.catch_window_points * step_gap, floor, 1)


def levelled_off(first: float, half: float, last: float, rho: float) -> bool:
    """True when the drop from `half` to `last` is under `rho` of the drop from `first`.

    A content loss that has not fallen at all (first <= last) has nothing left to wait for.
    """
    drop = first - last
    if not drop > 0:
        return True
    return half - last < rho * drop


def catch_patience(
    settings: HealthSettings, levelled_step: int, window: int, planned: int | None
) -> int:
    """Steps after levelling off without a catch before `catch` turns red."""
    if settings.catch_patience is not None:
        return settings.catch_patience
    patience = max(round(settings.catch_patience_ratio * levelled_step), 2 * window)
    if planned:
        patience = min(patience, max(1, planned // MAX_PATIENCE_FRACTION))
    return patience


def runaway_may_be_red(
    settings: HealthSettings, readings: int, step: int, stuck_since: int, planned: int | None
) -> bool:
    """Without a content role: has a stuck distance been seen long enough to turn red?"""
    if settings.runaway_patience is not None:
        return step - stuck_since >= settings.runaway_patience
    if readings < settings.runaway_min_readings:
        return False
    return not planned or step >= planned / RUNAWAY_LENGTH_FRACTION


@dataclass
class Levels:
    """The content loss's smoothed value at each closed window, thinned to at most MAX_LEVELS.

    `values[i]` is the value at the close of window `i * stride`; `first`, `half` and `last`
    are what `levelled_off` compares after `count` windows.
    """

    values: list[float] = field(default_factory=list)
    stride: int = 1
    count: int = 0
    last: float = math.nan

    def add(self, value: float) -> None:
        if self.count % self.stride == 0:
            self.values.append(value)
            if len(self.values) > MAX_LEVELS:
                self.values, self.stride = self.values[::2], self.stride * 2
        self.count += 1
        self.last = value

    def first_half_last(self) -> tuple[float, float, float]:
        """The values at the first window, at the window halfway through, and at the last."""
        half = self.values[min(len(self.values) - 1, (self.count // 2) // self.stride)]
        return self.values[0], half, self.last
