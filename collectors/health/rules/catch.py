"""`catch`: does the adversary start to fight back before the content loss levels off?

Statistics are taken per window, sized on the run's own time scale (time_scale.py: so many
content readings per window, or `catch_window` steps). The content loss is smoothed by an EMA
and its value at each window's close tells when it has levelled off (the latest half of the steps
brought < `plateau_rho` of its drop so far; sticky). After `baseline_windows` windows set the
adversary's (and gradient penalty's) baseline spread, the adversary has caught when its window
mean rises `catch_kappa` × max(|running minimum|, baseline std) above its running minimum, or when
its (or the penalty's) window std reaches `catch_gamma` × baseline. Green (for good) once caught;
grey with the reason while the baseline is set; amber until then; red when no catch came within
the catch patience after the content loss levelled off (`catch_patience_ratio` × that step).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from trainlight.collectors.health.judge import FeedContext, HealthSpec, Judge
from trainlight.collectors.health.observations import SegmentRows, Series
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.time_scale import (
    CADENCE_POINTS,
    Levels,
    cadence,
    catch_patience,
    levelled_off,
    window_steps,
)
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict
from trainlight.collectors.wire import CATCH_PLATEAU_STEP, CATCH_STEP


@dataclass
class Moments:
    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.squares += value * value

    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    def std(self) -> float:
        if not self.n:
            return math.nan
        mean = self.mean()
        return math.sqrt(max(0.0, self.squares / self.n - mean * mean))


@dataclass
class CatchWindow:
    adversary: str
    content: str
    gradient_penalty: str | None = None
    window: int | None = None  # steps per window, fixed once the logging cadence is known
    planned: int | None = None  # the run's declared length, if any
    pending: list[tuple[int, str, float]] = field(default_factory=list)  # until then
    content_steps: list[int] = field(default_factory=list)  # the first content readings
    index: int | None = None  # the open window's number (step // window)
    adv: Moments = field(default_factory=Moments)
    gp: Moments = field(default_factory=Moments)
    ema: float | None = None
    closed: int = 0
    baseline_adv_std: list[float] = field(default_factory=list)
    baseline_gp_std: list[float] = field(default_factory=list)
    adv_min: float | None = None
    levels: Levels = field(default_factory=Levels)
    plateau_since: int | None = None  # the step the content loss levelled off at
    caught_step: int | None = None
    caught_how: str = ""
    last_step: int | None = None

    def keys(self) -> set[str]:
        return {k for k in (self.adversary, self.content, self.gradient_penalty) if k}

    def update(
        self, rows: SegmentRows, settings: HealthSettings, planned: int | None = None
    ) -> Iterator[int]:
        """Take complete steps' rows; yields the step of the role value that closed a window
        (the evaluation points), while `last_step` is still the closed window's last one."""
        events = _merge(rows.metrics, self.keys())
        self.planned = planned
        if self.window is None:
            self._learn_cadence(events, settings, planned)  # holds the events
            if self.window is None:
                return
            events, self.pending = self.pending, []
        for step, key, value in events:
            index = step // self.window
            if self.index is not None and index > self.index:
                self._close(settings)
                yield step
            self.index = index if self.index is None else max(self.index, index)
            self.last_step = step
            if key == self.adversary:
                self.adv.add(value)
            elif key == self.gradient_penalty:
                self.gp.add(value)
            if key == self.content:
                self.ema = (
                    value
                    if self.ema is None
                    else (settings.ema_alpha * value + (1 - settings.ema_alpha) * self.ema)
                )

    def finish(self, settings: HealthSettings) -> Iterator[int]:
        """The run ended: its last window closes if the run reached that window's last step
        (the evaluation point: that step); a window the run stopped inside stays open."""
        if self.index is None or self.window is None:
            return
        if self.last_step != (self.index + 1) * self.window - 1:
            return
        self._close(settings)
        self.index = None  # rows after the end (a resumed run) open a new window
        yield self.last_step

    def _learn_cadence(
        self, events: list[tuple[int, str, float]], settings: HealthSettings, planned: int | None
    ) -> None:
        """Hold the first events until CADENCE_POINTS content readings fix the window."""
        self.pending += events
        for step, key, _ in events:
            if key == self.content and len(self.content_steps) < CADENCE_POINTS:
                self.content_steps.append(step)
        if settings.catch_window is not None or len(self.content_steps) >= CADENCE_POINTS:
            self.window = window_steps(settings, cadence(self.content_steps), planned)

    def _close(self, settings: HealthSettings) -> None:
        assert self.index is not None and self.window is not None
        end_step = (self.index + 1) * self.window - 1
        adv_mean, adv_std, gp_std = self.adv.mean(), self.adv.std(), self.gp.std()
        self.closed += 1
        if self.closed <= settings.baseline_windows:
            self.baseline_adv_std.append(adv_std)
            if self.gp.n:
                self.baseline_gp_std.append(gp_std)
        elif self.caught_step is None and self.adv.n:
            self._check_catch(adv_mean, adv_std, gp_std, end_step, settings)
        if self.adv.n and not math.isnan(adv_mean):
            self.adv_min = adv_mean if self.adv_min is None else min(self.adv_min, adv_mean)
        self._check_plateau(end_step, settings)
        self.adv, self.gp = Moments(), Moments()

    def _check_catch(
        self,
        adv_mean: float,
        adv_std: float,
        gp_std: float,
        end_step: int,
        settings: HealthSettings,
    ) -> None:
        base_adv = _mean(self.baseline_adv_std)
        base_gp = _mean(self.baseline_gp_std)
        scale = max(abs(self.adv_min or 0.0), base_adv, 1e-12)
        if self.adv_min is not None and adv_mean - self.adv_min >= settings.catch_kappa * scale:
            how = f"adversary loss rose from {self.adv_min:.4g} to {adv_mean:.4g}"
        elif base_adv > 0 and adv_std >= settings.catch_gamma * base_adv:
            how = f"adversary loss spread grew {adv_std / base_adv:.1f}x"
        elif base_gp > 0 and gp_std >= settings.catch_gamma * base_gp:
            how = f"gradient penalty spread grew {gp_std / base_gp:.1f}x"
        else:
            return
        self.caught_step, self.caught_how = end_step, how

    def _check_plateau(self, end_step: int, settings: HealthSettings) -> None:
        if self.ema is None or self.plateau_since is not None:
            return
        self.levels.add(self.ema)
        if self.levels.count >= settings.baseline_windows + 2 and levelled_off(
            *self.levels.first_half_last(), settings.plateau_rho
        ):
            self.plateau_since = end_step


class CatchRule:
    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings

    def evaluate(self, window: CatchWindow) -> Verdict:
        if window.caught_step is not None:
            return Verdict(
                GREEN,
                f"caught at step {window.caught_step:,}: {window.caught_how}",
                window.caught_step,
                sticky=True,
            )
        # Judged only when a window closes, so its size is known by then.
        assert window.window is not None
        baseline = self.settings.baseline_windows
        if window.closed <= baseline:
            reason = (
                f"no verdict yet: {window.closed} of {baseline} baseline windows "
                f"({window.window:,} steps each)"
            )
            return Verdict(GREY, reason, window.last_step)
        if window.plateau_since is None:
            return Verdict(AMBER, "no catch yet; content loss still falling", window.last_step)
        patience = catch_patience(
            self.settings, window.plateau_since, window.window, window.planned
        )
        flat_for = (window.last_step or 0) - window.plateau_since
        reason = (
            f"no catch: content loss flat since step {window.plateau_since:,} "
            f"({flat_for:,} steps; patience {patience:,})"
        )
        return Verdict(RED if flat_for >= patience else AMBER, reason, window.last_step)


def _merge(metrics: dict[str, Series], keys: set[str]) -> list[tuple[int, str, float]]:
    """The role series of a segment as one step-ordered event list."""
    events = [
        (step, key, value)
        for key in keys
        if key in metrics
        for step, value in zip(*metrics[key], strict=True)
    ]
    events.sort(key=lambda e: e[0])
    return events


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else 0.0


# What catch leaves for runaway: [(step, content plateau start from that step on), ...], the
# first entry (step -1) holding the start in force before this segment's window closes.
PLATEAUS = "catch/plateaus"


class CatchJudge(Judge[CatchWindow]):
    signal = "catch"
    window_type = CatchWindow
    rank = 2

    @classmethod
    def applies(cls, spec: HealthSpec) -> bool:
        return spec.catch_roles() is not None

    @classmethod
    def same_setup(cls, old: HealthSpec, new: HealthSpec) -> bool:
        return old.catch_roles() == new.catch_roles()

    def new_window(self, spec: HealthSpec) -> CatchWindow:
        roles = spec.catch_roles()
        assert roles is not None  # `applies` said so
        adversary, content, gradient_penalty = roles
        return CatchWindow(adversary, content, gradient_penalty)

    @classmethod
    def upgrade(cls, saved: dict[str, Any], spec: HealthSpec) -> dict[str, Any]:
        if "window" not in saved:  # saved before windows were derived: 500 was the default
            saved["window"] = spec.settings.catch_window or 500
        return saved

    def keys(self) -> set[str]:
        return self.window.keys()

    def feed(self, ctx: FeedContext) -> None:
        """Judge at each window close (the last one, if the run ended on its last step);
        record the plateau and catch steps as metric rows when they are found."""
        window, settings = self.window, ctx.spec.settings
        plateaus: list[tuple[int, int | None]] = [(-1, window.plateau_since)]
        marks = self._marks()
        rule = CatchRule(settings)
        closes = window.update(ctx.rows, settings, ctx.spec.planned_steps)
        for step in itertools.chain(closes, window.finish(settings) if ctx.final else ()):
            ctx.judge(step, self.rank, self.signal, rule.evaluate(window))
            ctx.derived += self._derived(marks)
            marks = self._marks()
            if marks[0] != plateaus[-1][1]:
                plateaus.append((step, marks[0]))
        ctx.shared[PLATEAUS] = plateaus

    def _marks(self) -> tuple[int | None, int | None]:
        return self.window.plateau_since, self.window.caught_step

    def _derived(self, before: tuple[int | None, int | None]) -> list[tuple[int, str, float]]:
        plateau, caught = self._marks()
        rows = []
        if plateau is not None and plateau != before[0]:
            rows.append((plateau, CATCH_PLATEAU_STEP, float(plateau)))
        if caught is not None and caught != before[1]:
            rows.append((caught, CATCH_STEP, float(caught)))
        return rows


SPEC = SignalSpec(
    name="catch",
    column="catch",
    title="Catch (adversary vs content)",
    summary="Adversary caught up after the content loss plateaued",
    explain=lambda s: (
        "Once the content loss plateaus, the adversary should catch up (its window mean rises "
        f"{s.catch_kappa:.0%} above its minimum, or its spread grows {s.catch_gamma:g}x its "
        "early baseline). No catch long after the plateau means the run is unlikely to improve."
    ),
    missing="not judged: call mon.roles(adversary=…, content=…)",
    needs=("roles",),
    judge=CatchJudge,
)
