"""`overfit`: the validation loss running away from its best while the training loss does not.

Read at each validation-loss reading (the key `val_loss`, `valid_loss`, `eval_loss`, `val/loss`
or `validation_loss`, or the one named by `mon.roles(val_loss=...)`), smoothed as the median of
the last `overfit_smooth` readings. Its best is the lowest smoothed value so far. The training
loss's level at a reading is the median of its last `overfit_train_window` readings up to that
step; the rule speaks only while that level is not above its level at the best (a training loss
that rises too is divergence, the `spike` signal's business, not overfitting).

Amber: `overfit_rising` consecutive readings more than `overfit_tol` above the best.
Red: `overfit_patience` consecutive readings more than `overfit_margin` above the best *and*,
when the run logs a validation score (`val_acc`, `eval_accuracy`, ... or `mon.roles(val_metric=
...)`, higher is better), that score more than `overfit_metric_drop` under its own best. A
rising validation loss alone is not doom: a network fitting clean data often grows more
confident on the examples it gets wrong while its accuracy holds, and stopping it loses nothing
but also gains nothing. Red is not sticky: a validation loss that comes back clears it.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from trainlight.collectors.health.judge import FeedContext, HealthSpec, Judge
from trainlight.collectors.health.observations import Series
from trainlight.collectors.health.rules.spike import main_loss_key
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict
from trainlight.collectors.wire import (
    OVERFIT_BEST,
    OVERFIT_FROM,
    VAL_LOSS,
    VAL_LOSS_NAMES,
    VAL_METRIC,
    VAL_METRIC_NAMES,
)


def val_loss_keys(roles: Mapping[str, str]) -> tuple[str, ...]:
    """The validation-loss keys to look for, the role-named one alone when there is one."""
    named = roles.get(VAL_LOSS)
    return (named,) if named else VAL_LOSS_NAMES


def val_metric_keys(roles: Mapping[str, str]) -> tuple[str, ...]:
    named = roles.get(VAL_METRIC)
    return (named,) if named else VAL_METRIC_NAMES


@dataclass
class OverfitWindow:
    val_key: str | None = None  # the validation loss this run logs (the first name found)
    metric_key: str | None = None  # and its validation score, if any
    readings: int = 0  # validation-loss readings so far
    recent: list[float] = field(default_factory=list)  # last raw readings, for the smoothing
    best: tuple[int, float, float | None] | None = None  # (step, smoothed value, train level)
    latest: tuple[int, float, float | None] | None = None  # the same, at the latest reading
    metric_recent: list[float] = field(default_factory=list)
    metric_best: float | None = None  # best smoothed score
    metric_now: float | None = None  # latest smoothed score
    train_recent: list[float] = field(default_factory=list)  # last train-loss readings
    rising: int = 0  # consecutive readings above the best (tolerance), train loss not rising
    past_margin: int = 0  # consecutive readings past the margin with the score down too
    flagged: bool = False  # this rise's start was recorded (derived rows)

    def train_level(self) -> float | None:
        return statistics.median(self.train_recent) if self.train_recent else None

    def take_train(self, values: list[float], settings: HealthSettings) -> None:
        self.train_recent = [*self.train_recent, *values][-settings.overfit_train_window :]

    def take_metric(self, values: list[float], settings: HealthSettings) -> None:
        for value in values:
            if value != value:
                continue
            self.metric_recent = [*self.metric_recent, value][-settings.overfit_smooth :]
            self.metric_now = statistics.median(self.metric_recent)
            if self.metric_best is None or self.metric_now > self.metric_best:
                self.metric_best = self.metric_now

    def take_val(
        self, step: int, value: float, settings: HealthSettings
    ) -> list[tuple[int, str, float]]:
        """One validation-loss reading (the train loss and score up to its step taken before);
        the derived rows it produced: where the loss was at its best, when a rise is first seen."""
        self.readings += 1
        self.recent = [*self.recent, value][-settings.overfit_smooth :]
        smoothed = statistics.median(self.recent)
        train = self.train_level()
        self.latest = (step, smoothed, train)
        if self.best is None or smoothed <= self.best[1]:
            self.best = (step, smoothed, train)
            self.rising = self.past_margin = 0
            self.flagged = False
            return []
        best_step, best, best_train = self.best
        train_held = train is None or best_train is None or train <= best_train
        rise = (smoothed - best) / max(abs(best), 1e-12)
        self.rising = self.rising + 1 if train_held and rise > settings.overfit_tol else 0
        past = train_held and rise > settings.overfit_margin and self.metric_fell(settings)
        self.past_margin = self.past_margin + 1 if past else 0
        if self.rising >= settings.overfit_rising and not self.flagged:
            self.flagged = True
            return [(step, OVERFIT_FROM, float(best_step)), (step, OVERFIT_BEST, best)]
        return []

    def metric_fell(self, settings: HealthSettings) -> bool:
        """Whether the score confirms the loss (no score logged: the loss alone decides)."""
        if self.metric_best is None or self.metric_now is None:
            return True
        return self.metric_now < self.metric_best - settings.overfit_metric_drop * abs(
            self.metric_best
        )

    def state(self, settings: HealthSettings) -> str:
        if self.readings < settings.overfit_min_evals:
            return GREY
        if self.past_margin >= settings.overfit_patience:
            return RED
        return AMBER if self.rising >= settings.overfit_rising else GREEN


class OverfitRule:
    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings

    def evaluate(self, window: OverfitWindow) -> Verdict:
        settings = self.settings
        state = window.state(settings)
        if state == GREY:
            need = settings.overfit_min_evals
            return Verdict(GREY, f"no verdict yet: {window.readings} of {need} validation readings")
        if state == GREEN:
            return Verdict(GREEN, "")
        assert window.best is not None and window.latest is not None
        best_step, best, _ = window.best
        step, now, _ = window.latest
        said = (
            f"{window.val_key} {now:.4g} at step {step:,}, up {now / best - 1:.0%} from its "
            f"best {best:.4g} at step {best_step:,} while the training loss kept falling"
        )
        if window.metric_key and window.metric_best is not None and window.metric_now is not None:
            said += f"; {window.metric_key} {window.metric_now:.4g} (best {window.metric_best:.4g})"
        return Verdict(state, said, step)


class OverfitJudge(Judge[OverfitWindow]):
    signal = "overfit"
    window_type = OverfitWindow
    rank = 6

    def __init__(self, spec: HealthSpec, window: OverfitWindow | None = None) -> None:
        super().__init__(spec, window)
        self.train_key = main_loss_key(spec.roles)
        self.val_keys = val_loss_keys(spec.roles)
        self.metric_keys = val_metric_keys(spec.roles)

    @classmethod
    def same_setup(cls, old: HealthSpec, new: HealthSpec) -> bool:
        return (main_loss_key(old.roles), val_loss_keys(old.roles), val_metric_keys(old.roles)) == (
            main_loss_key(new.roles),
            val_loss_keys(new.roles),
            val_metric_keys(new.roles),
        )

    def keys(self) -> set[str]:
        return {self.train_key, *self.val_keys, *self.metric_keys}

    def feed(self, ctx: FeedContext) -> None:
        """Each validation reading is an evaluation point; the train-loss and score readings up
        to its step are taken first (a reading at the same step counts)."""
        metrics, window, settings = ctx.rows.metrics, self.window, ctx.spec.settings
        window.val_key = window.val_key or _first_present(self.val_keys, metrics)
        window.metric_key = window.metric_key or _first_present(self.metric_keys, metrics)
        train = metrics.get(self.train_key, ([], []))
        metric = metrics.get(window.metric_key or "", ([], []))
        taken_train = taken_metric = 0
        rule = OverfitRule(settings)
        for step, value in zip(*metrics.get(window.val_key or "", ([], [])), strict=True):
            taken_train = _take_upto(train, step, taken_train, window.take_train, settings)
            taken_metric = _take_upto(metric, step, taken_metric, window.take_metric, settings)
            if value != value:  # NaN: the nonfinite signal's business
                continue
            ctx.derived += window.take_val(step, value, settings)
            ctx.judge(step, self.rank, self.signal, rule.evaluate(window))
        window.take_train(train[1][taken_train:], settings)
        window.take_metric(metric[1][taken_metric:], settings)


def _first_present(keys: tuple[str, ...], metrics: Mapping[str, Series]) -> str | None:
    return next((key for key in keys if key in metrics), None)


def _take_upto(
    series: Series,
    step: int,
    taken: int,
    take: Callable[[list[float], HealthSettings], None],
    settings: HealthSettings,
) -> int:
    """Hand `take` the readings of `series` after the first `taken` up to `step` (steps are in
    logged order, which is step order); the new count taken."""
    steps, values = series
    upto = bisect.bisect_right(steps, step, lo=taken)
    if upto > taken:
        take(values[taken:upto], settings)
    return upto


def _smoothing(s: HealthSettings) -> str:
    return f" (median of its last {s.overfit_smooth} readings)" if s.overfit_smooth > 1 else ""


SPEC = SignalSpec(
    name="overfit",
    column="overfit",
    title="Overfitting",
    summary="Validation loss rising from its best while the training loss falls",
    explain=lambda s: (
        f"Amber when the validation loss{_smoothing(s)} stays over {s.overfit_tol:.0%} above "
        f"its best for {s.overfit_rising} readings while the training loss has not risen; red "
        f"when it is {s.overfit_margin:.0%} above for {s.overfit_patience} readings and the "
        f"validation score (val_acc, ...; if logged) is {s.overfit_metric_drop:.0%} under its "
        "best. A rising validation loss with a score that holds stays amber."
    ),
    missing="not judged: log a validation loss (`val_loss`, `eval_loss`, ... or name it with "
    "mon.roles(val_loss=...))",
    reads=(VAL_LOSS,),
    judge=OverfitJudge,
)
