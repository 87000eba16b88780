"""`runaway`: is the distribution of generated per-sample means converging to the real data's?

Reads what the collector measures (`runaway/distance`: two-sample KS statistic against the
reference; `runaway/critical`: its critical value at α = 0.01; `runaway/effect`: |median diff| /
reference IQR). Green below the critical value; amber while above it but shrinking (by
`runaway_shrink` over the last `runaway_trend_points` readings) or while the effect is small; red
when above it, not shrinking, with a real effect, at a reading at or after the step the content
loss levelled off (time_scale.py), or, with no content role, once `runaway_min_readings` readings
and 1/10 of the declared length have passed (`runaway_patience` steps stuck, when set).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from trainlight.collectors.health.observations import SegmentRows
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.time_scale import runaway_may_be_red
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict
from trainlight.collectors.wire import (
    RUNAWAY_CRITICAL,
    RUNAWAY_DISTANCE,
    RUNAWAY_EFFECT,
    RUNAWAY_KEYS,
)

KEYS = RUNAWAY_KEYS


@dataclass
class RunawayWindow:
    readings: list[tuple[int, float, float, float]] = field(default_factory=list)
    stuck_since: int | None = None  # first step of the current large-and-not-shrinking stretch
    content_flat_since: int | None = None  # from the catch window, when there is a content role
    has_content_role: bool = False
    seen: int = 0  # readings so far
    planned: int | None = None  # the run's declared length, if any

    def update(self, rows: SegmentRows, settings: HealthSettings) -> Iterator[int]:
        """Take complete steps' rows; yields each reading's step (the evaluation points)."""
        distance = rows.metrics.get(RUNAWAY_DISTANCE)
        if distance is None:
            return
        critical = dict(zip(*rows.metrics.get(RUNAWAY_CRITICAL, ([], [])), strict=True))
        effect = dict(zip(*rows.metrics.get(RUNAWAY_EFFECT, ([], [])), strict=True))
        for step, value in zip(*distance, strict=True):
            self.readings.append((step, value, critical.get(step, 0.0), effect.get(step, 0.0)))
            self.seen += 1
            del self.readings[: -settings.runaway_trend_points]
            large, shrinking = self.large(), self.shrinking(settings)
            if large and not shrinking:
                self.stuck_since = step if self.stuck_since is None else self.stuck_since
            else:
                self.stuck_since = None
            yield step

    def large(self) -> bool:
        _, distance, critical, _ = self.readings[-1]
        return not distance < critical  # NaN distance counts as large

    def shrinking(self, settings: HealthSettings) -> bool:
        if len(self.readings) < 2:
            return False
        first, last = self.readings[0][1], self.readings[-1][1]
        return first > 0 and (first - last) / first >= settings.runaway_shrink


class RunawayRule:
    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings

    def evaluate(self, window: RunawayWindow) -> Verdict:
        if not window.readings:
            return Verdict(GREY)
        step, distance, critical, effect = window.readings[-1]
        if not window.large():
            return Verdict(GREEN, "", step)
        detail = f"KS distance {distance:.3f} > {critical:.3f}, effect {effect:.2f} IQR"
        if window.shrinking(self.settings) or window.stuck_since is None:
            return Verdict(AMBER, f"{detail}, shrinking", step)
        if effect < self.settings.runaway_min_effect:
            return Verdict(AMBER, f"{detail} (small effect)", step)
        if window.has_content_role:
            if window.content_flat_since is not None and step >= window.content_flat_since:
                return Verdict(
                    RED,
                    f"{detail}, not shrinking while the content loss is flat "
                    f"since step {window.content_flat_since:,}",
                    step,
                )
            return Verdict(AMBER, f"{detail}, not shrinking", step)
        if runaway_may_be_red(self.settings, window.seen, step, window.stuck_since, window.planned):
            return Verdict(RED, f"{detail}, not shrinking since step {window.stuck_since:,}", step)
        return Verdict(AMBER, f"{detail}, not shrinking", step)
