"""`runaway` judged over a block of readings at once, with the states of judging each in turn.

Every runaway reading is an evaluation point, and readings may come every step (12,500 in a
100k-row segment of `bench/ingest_throughput.py`). Walking them one by one in Python and wording
a verdict for each cost more than the rest of ingest, so numpy computes every reading's window
(`large`, `shrinking`, the start of its large-and-not-shrinking stretch) and its state in one
pass, and `RunawayRule.evaluate` runs only where the badge changes, to word the reason. The
per-reading `RunawayWindow.update` + `RunawayRule.evaluate` stay the definition: the tests check
this block against them reading by reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trainlight.collectors.health.observations import SegmentRows, Series
from trainlight.collectors.health.rules.runaway import RunawayWindow
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.time_scale import runaway_may_be_red
from trainlight.collectors.health.verdict import AMBER, GREEN, RED
from trainlight.collectors.wire import RUNAWAY_CRITICAL, RUNAWAY_DISTANCE, RUNAWAY_EFFECT

Reading = tuple[int, float, float, float]  # (step, distance, critical, effect)


@dataclass(frozen=True)
class Block:
    """A block's readings, each with its state and what its window held (kept as columns: a
    reading's tuple and window are rebuilt only to word a verdict)."""

    before: list[Reading]  # the window's readings before the block
    steps: list[int]
    columns: tuple[list[float], ...]  # distance, critical, effect
    stuck: npt.NDArray[np.int64]  # each reading's stuck_since where `flag`
    flag: npt.NDArray[np.bool_]  # large and not shrinking
    states: list[str]
    content_flat_since: int | None
    has_content_role: bool
    trend_points: int
    seen_before: int  # readings the window had taken before the block
    planned: int | None

    def stuck_since(self, i: int) -> int | None:
        return int(self.stuck[i]) if self.flag[i] else None

    def window_at(self, i: int) -> RunawayWindow:
        """The window as it was right after reading `i` (to word its verdict)."""
        low = max(0, i + 1 - self.trend_points)
        steps, (distance, critical, effect) = self.steps, self.columns
        kept = [(steps[k], distance[k], critical[k], effect[k]) for k in range(low, i + 1)]
        if len(kept) < self.trend_points:
            kept = (self.before + kept)[-self.trend_points :]
        return RunawayWindow(
            kept,
            self.stuck_since(i),
            self.content_flat_since,
            self.has_content_role,
            self.seen_before + i + 1,
            self.planned,
        )


def advance(window: RunawayWindow, rows: SegmentRows, settings: HealthSettings) -> Block | None:
    """Take a block's readings into `window` at once; None when it holds none."""
    distance = rows.metrics.get(RUNAWAY_DISTANCE)
    if distance is None or not distance[0]:
        return None
    steps = np.asarray(distance[0], dtype=np.int64)
    d = np.asarray(distance[1], dtype=np.float64)
    c = _aligned(rows.metrics.get(RUNAWAY_CRITICAL), distance[0])
    e = _aligned(rows.metrics.get(RUNAWAY_EFFECT), distance[0])
    trend = settings.runaway_trend_points
    before = list(window.readings[-(trend - 1) :]) if trend > 1 else []
    large, shrinking = _large_shrinking(before, d, c, settings)
    flag = large & ~shrinking
    stuck = _stuck_since(flag, steps, window.stuck_since)
    states = np.full(d.size, AMBER, dtype=object)
    states[~large] = GREEN
    can_be_red = flag & ~(e < settings.runaway_min_effect)
    states[_may_be_red(window, can_be_red, steps, stuck, settings)] = RED
    block = Block(
        before,
        distance[0],
        (d.tolist(), c.tolist(), e.tolist()),
        stuck,
        flag,
        states.tolist(),
        window.content_flat_since,
        window.has_content_role,
        trend,
        window.seen,
        window.planned,
    )
    window.seen += d.size
    last = d.size - 1
    window.readings = block.window_at(last).readings
    window.stuck_since = block.stuck_since(last)
    return block


def _may_be_red(
    window: RunawayWindow,
    candidates: npt.NDArray[np.bool_],
    steps: npt.NDArray[np.int64],
    stuck: npt.NDArray[np.int64],
    settings: HealthSettings,
) -> npt.NDArray[np.bool_]:
    """The candidate readings whose stuck distance may be red already (`RunawayRule.evaluate`'s
    time condition): with a content role, at or after the step the content loss levelled off;
    without one, `runaway_may_be_red` at that reading's count."""
    if window.has_content_role:
        flat = window.content_flat_since
        return candidates & (steps >= flat) if flat is not None else np.zeros_like(candidates)
    red = np.zeros_like(candidates)
    for i in np.flatnonzero(candidates):
        seen = window.seen + 1 + int(i)
        red[i] = runaway_may_be_red(settings, seen, int(steps[i]), int(stuck[i]), window.planned)
    return red


def _aligned(series: Series | None, steps: Sequence[int]) -> npt.NDArray[np.float64]:
    """The series' values at `steps` (0.0 where it has none), as the per-reading rule reads it."""
    if series is None:
        return np.zeros(len(steps))
    if series[0] == steps:
        return np.asarray(series[1], dtype=np.float64)
    at = dict(zip(*series, strict=True))
    return np.asarray([at.get(step, 0.0) for step in steps], dtype=np.float64)


def _large_shrinking(
    before: list[Reading],
    d: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
    settings: HealthSettings,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Each reading: above the critical value (NaN counts as above), and shrinking over the
    last `runaway_trend_points` readings (its own included)."""
    trend = settings.runaway_trend_points
    history = np.concatenate([np.asarray([r[1] for r in before], dtype=np.float64), d])
    at = len(before) + np.arange(d.size)
    oldest = np.maximum(0, at - trend + 1)
    first = history[oldest]
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = (first - d) / first
    shrinking = (at - oldest >= 1) & (first > 0) & (drop >= settings.runaway_shrink)
    return ~(d < c), shrinking


def _stuck_since(
    flag: npt.NDArray[np.bool_], steps: npt.NDArray[np.int64], before: int | None
) -> npt.NDArray[np.int64]:
    """For each reading, the first step of its stretch of flagged readings (meaningless where
    it is not flagged); a stretch open before the block keeps its start, `before`."""
    previous = np.concatenate([[before is not None], flag[:-1]])
    index = np.arange(flag.size)
    start = np.maximum.accumulate(np.where(flag & ~previous, index, -1))
    carried = before if before is not None else 0
    return np.where(start >= 0, steps[np.maximum(start, 0)], carried)
