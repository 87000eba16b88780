"""`catch`: does the adversary start to fight back before the content loss levels off?

Statistics are taken per window of `catch_window` steps. The content loss is smoothed by an EMA;
a window whose EMA moved less than `plateau_rho` (relative) starts or extends a plateau. After
`baseline_windows` windows set the adversary's (and gradient penalty's) baseline spread, the
adversary has caught when its window mean rises `catch_kappa` × max(|running minimum|, baseline
std) above its running minimum, or when its (or the penalty's) window std reaches `catch_gamma` ×
baseline. Green (for good) once caught; amber until then; red when the content loss has been flat
for `catch_patience` steps without a catch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from trainlight.collectors.health.observations import SegmentRows, Series
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict


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
    index: int | None = None  # the open window's number (step // catch_window)
    adv: Moments = field(default_factory=Moments)
    gp: Moments = field(default_factory=Moments)
    ema: float | None = None
    closed: int = 0
    baseline_adv_std: list[float] = field(default_factory=list)
    baseline_gp_std: list[float] = field(default_factory=list)
    adv_min: float | None = None
    prev_ema: float | None = None
    plateau_since: int | None = None
    caught_step: int | None = None
    caught_how: str = ""
    last_step: int | None = None

    def keys(self) -> set[str]:
        return {k for k in (self.adversary, self.content, self.gradient_penalty) if k}

    def update(self, rows: SegmentRows, settings: HealthSettings) -> Iterator[int]:
        """Take complete steps' rows; yields the step of the role value that closed a window
        (the evaluation points), while `last_step` is still the closed window's last one."""
        events = _merge(rows.metrics, self.keys())
        for step, key, value in events:
            index = step // settings.catch_window
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
        if self.index is None or self.last_step != (self.index + 1) * settings.catch_window - 1:
            return
        self._close(settings)
        self.index = None  # rows after the end (a resumed run) open a new window
        yield self.last_step

    def _close(self, settings: HealthSettings) -> None:
        assert self.index is not None
        end_step = (self.index + 1) * settings.catch_window - 1
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
        if self.ema is None:
            return
        if self.prev_ema is not None:
            change = abs(self.ema - self.prev_ema) / max(abs(self.prev_ema), 1e-12)
            flat = change < settings.plateau_rho
            if flat and self.plateau_since is None:
                self.plateau_since = end_step - settings.catch_window + 1
            elif not flat:
                self.plateau_since = None
        self.prev_ema = self.ema


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
        if window.closed <= self.settings.baseline_windows:
            reason = f"no verdict yet: {window.closed} of {self.settings.baseline_windows} "
            return Verdict(GREY, reason + "baseline windows", window.last_step)
        if window.plateau_since is None:
            return Verdict(AMBER, "no catch yet; content loss still falling", window.last_step)
        flat_for = (window.last_step or 0) - window.plateau_since
        reason = f"no catch: content loss flat since step {window.plateau_since:,}"
        if flat_for >= self.settings.catch_patience:
            return Verdict(RED, reason, window.last_step)
        return Verdict(AMBER, reason, window.last_step)


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
