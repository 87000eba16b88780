"""`spike`: main-loss values far above their recent level, and whether the loss comes back.

The main loss is the logged key `loss` (or the one named by `mon.roles(loss=...)`). Each reading
is compared with the median and MAD of the last `loss_spike_window` readings before it (readings
inside an open spike are left out, so the level stays what it was before the spike). A reading
opens a spike when it is `loss_spike_k` robust deviations (1.4826·MAD), `loss_spike_rtol`
(relative) and `loss_spike_floor` times the run's starting level (the median of its first
`loss_spike_min_history` readings) above that median: the relative floor keeps a loss with
almost no noise from spiking on a wiggle, the robust one keeps a noisy loss from spiking on its
own noise, and the starting-level one keeps a converged loss near 0 (a classifier at 0.01 whose
batch with one mistake reads 0.3) from spiking on single batches that undo nothing of the
run's progress. The spike closes
(recovered) at the first reading back under a quarter of the way from that level to that ceiling.
States: grey until `loss_spike_min_history` readings; green; amber while a spike is open and for
`loss_spike_window` readings after one recovered; red when the loss has not come back within
`loss_spike_patience` readings (diverged, for good), or when `loss_spike_repeat` spikes opened
within `loss_spike_window` readings. A single spike that recovers is never red.

Where `watch` records per-layer gradient norms, a spike past its patience is told apart by them.
A run knocked back to where it started (a learning-rate burst undid what it learned) that
relearns has gradients as large as before the spike: each layer's norm over its level before it
(the median of its last `GRADIENT_LEVEL_READINGS` readings outside spikes), the median over
layers, stays near 1 (0.4-1.8 on the LM batches). A run stuck for good has nothing left to learn
from: a language model that unlearned to its unigram plateau, a net whose units all died, has
that figure under 0.1 within a few readings. So past its patience the spike stays amber
("relearning") while the median of the last `GRADIENT_RECENT` such figures is within a factor
of 1 / `loss_spike_relearning` of 1 (0.25-4x by default), and diverges (red) at the first
reading it is not: gradients far above their level are no sign of relearning either (a run
blowing up keeps the loss-only verdict). Relearning must also show in the loss: every
`loss_spike_relearn_every` readings past the patience, the median of the spike's last
`loss_spike_window` readings must be `RELEARN_GAIN` lower than at the previous such check, else
the spike has diverged (a loss that stays up with live gradients is not amber for ever). Without
gradient rows the loss alone decides, as above.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from trainlight.collectors.health.judge import FeedContext, HealthSpec, Judge
from trainlight.collectors.health.observations import layers_by_step
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Transition, Verdict
from trainlight.collectors.wire import GRAD_NORM, LOSS, SPIKE_LEVEL, SPIKE_ONSET, SPIKE_RECOVERED

MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normal noise
GRADIENT_LEVEL_READINGS = 5  # a layer's gradient level before a spike: the median of these
GRADIENT_RECENT = 3  # gradient readings during a spike whose median says whether it relearns
RELEARN_GAIN = 0.01  # a relearning spike's loss falls at least this much (relative) per check


def main_loss_key(roles: Mapping[str, str]) -> str:
    """The key of the run's main training loss: named by `mon.roles(loss=...)`, else `loss`."""
    return roles.get(LOSS) or LOSS


def spike_band(
    history: Sequence[float], start: float, settings: HealthSettings
) -> tuple[float, float] | None:
    """(level, ceiling): the median of the recent readings and the value above which a reading
    opens a spike (`start`: the run's starting level); None while the history is too short."""
    if len(history) < settings.loss_spike_min_history:
        return None
    level = statistics.median(history)
    mad = statistics.median(abs(x - level) for x in history)
    floor = _floors(level, start, settings)
    return level, max(level + settings.loss_spike_k * MAD_SCALE * mad, floor)


def back_under(level: float, ceiling: float) -> float:
    """A spike has recovered at the first reading under this: a quarter of the way from the level
    up to the ceiling it crossed. Not the ceiling itself, nor halfway: a loss that jumped and
    settled a little under it (a language model that unlearned to the unigram level) has not
    come back, and its noise must not carry one reading that low."""
    return level + (ceiling - level) / 4


def _median_of_sorted(values: Sequence[float]) -> float:
    """`statistics.median` of values already in order."""
    n = len(values)
    middle = n // 2
    return values[middle] if n % 2 else (values[middle - 1] + values[middle]) / 2


def _floors(level: float, start: float, settings: HealthSettings) -> float:
    """The lowest ceiling: the relative and the starting-level floors above the level."""
    return level + max(
        settings.loss_spike_rtol * abs(level), settings.loss_spike_floor * abs(start)
    )


@dataclass
class SpikeWindow:
    history: list[float] = field(default_factory=list)  # recent readings outside spikes, in order
    readings: int = 0  # main-loss readings so far
    open: tuple[int, float, float, float] | None = None  # (step, level, ceiling, peak) of a spike
    open_readings: int = 0  # readings since it opened
    open_recent: list[float] = field(default_factory=list)  # its latest `window` readings
    relearn_mark: float | None = None  # their median at the last relearning check
    onsets: list[int] = field(default_factory=list)  # reading numbers of recent spike onsets
    recovered: tuple[int, int, float] | None = None  # (onset step, back step, peak) of the last
    recovered_at: int = 0  # the reading number it came back at
    diverged: tuple[int, float, float] | None = None  # (onset step, level, latest value): for good
    start: float | None = None  # the median of the first min_history readings: the run's scale
    gradients_before: dict[str, list[float]] = field(default_factory=dict)  # per layer, latest
    # gradient norms outside spikes
    gradients_since: list[float] = field(default_factory=list)  # during a spike: the median
    # over layers of each layer's norm / its level before it, latest readings

    def __post_init__(self) -> None:
        # `history` in value order (not a field: rebuilt on load), so the median of each reading
        # is a lookup and keeping it costs two C-level bisects, not a sort.
        self._ordered = sorted(self.history)

    def take(
        self, step: int, value: float, settings: HealthSettings
    ) -> list[tuple[int, str, float]]:
        """One main-loss reading (complete steps, in order); the derived rows it produced: a
        spike's onset (its value and the level before it) or its recovery (steps it took)."""
        self.readings += 1
        if value != value or self.diverged is not None:  # NaN: the nonfinite signal's business
            return []
        if self.open is not None:
            return self._while_open(step, value, settings)
        band = self._band_if_high(value, settings)
        if band is not None and value > band[1]:
            self.open, self.open_readings = (step, band[0], band[1], value), 0
            self.gradients_since, self.open_recent, self.relearn_mark = [], [value], None
            self.onsets = [*self.recent_onsets(settings), self.readings]
            return [(step, SPIKE_ONSET, value), (step, SPIKE_LEVEL, band[0])]
        self._remember(value, settings)
        return []

    def take_gradients(self, norms: Mapping[str, float]) -> None:
        """One `watch` reading of per-layer gradient norms (taken before that step's loss)."""
        if self.open is None:
            for layer, norm in norms.items():
                if math.isfinite(norm):
                    kept = self.gradients_before.setdefault(layer, [])
                    kept.append(norm)
                    del kept[:-GRADIENT_LEVEL_READINGS]
            return
        ratios = []
        for layer, norm in norms.items():
            before = self.gradients_before.get(layer)
            level = statistics.median(before) if before else 0.0
            if level > 0 and math.isfinite(norm):
                ratios.append(norm / level)
        if ratios:
            self.gradients_since = [*self.gradients_since, statistics.median(ratios)]
            del self.gradients_since[:-GRADIENT_RECENT]

    def gradient_level(self) -> float | None:
        """During a spike: the layers' gradients against their level before it (None: unread)."""
        return statistics.median(self.gradients_since) if self.gradients_since else None

    def relearning(self, settings: HealthSettings) -> bool:
        """Whether an open spike's gradients say the net is learning again (not stuck)."""
        level = self.gradient_level()
        band = settings.loss_spike_relearning
        return level is not None and band <= level <= 1 / band

    def _band_if_high(self, value: float, settings: HealthSettings) -> tuple[float, float] | None:
        """`spike_band`, computed only for a value above the relative floor (the ceiling is never
        lower): the MAD is not needed for most readings."""
        if self.start is None:
            if len(self.history) < settings.loss_spike_min_history:
                return None
            self.start = _median_of_sorted(self._ordered)  # the first min_history readings
        if value <= _floors(_median_of_sorted(self._ordered), self.start, settings):
            return None
        return spike_band(self.history, self.start, settings)

    def recent_onsets(self, settings: HealthSettings) -> list[int]:
        return [r for r in self.onsets if r > self.readings - settings.loss_spike_window]

    def state(self, settings: HealthSettings) -> str:
        """The state after the latest reading."""
        if (
            self.diverged is not None
            or len(self.recent_onsets(settings)) >= settings.loss_spike_repeat
        ):
            return RED
        if self.open is not None:
            return AMBER
        if (
            self.recovered is not None
            and self.readings - self.recovered_at < settings.loss_spike_window
        ):
            return AMBER
        return GREEN if len(self.history) >= settings.loss_spike_min_history else GREY

    def _while_open(
        self, step: int, value: float, settings: HealthSettings
    ) -> list[tuple[int, str, float]]:
        assert self.open is not None
        onset, level, ceiling, peak = self.open
        if value <= back_under(level, ceiling):
            self.recovered, self.recovered_at = (onset, step, peak), self.readings
            self.open = None
            self._remember(value, settings)
            return [(step, SPIKE_RECOVERED, float(step - onset))]
        self.open = (onset, level, ceiling, max(peak, value))
        self.open_readings += 1
        self.open_recent.append(value)
        del self.open_recent[: -settings.loss_spike_window]
        if self.open_readings >= settings.loss_spike_patience and not (
            self.relearning(settings) and self._loss_still_falls(settings)
        ):
            self.diverged = (onset, level, value)
        return []

    def _loss_still_falls(self, settings: HealthSettings) -> bool:
        """At each relearning check (the patience, then every `loss_spike_relearn_every`
        readings): whether the spike's recent loss is lower than at the previous check."""
        since = self.open_readings - settings.loss_spike_patience
        if since % settings.loss_spike_relearn_every:
            return True
        now = statistics.median(self.open_recent)
        mark, self.relearn_mark = self.relearn_mark, now
        return mark is None or now <= mark - RELEARN_GAIN * abs(mark)

    def _remember(self, value: float, settings: HealthSettings) -> None:
        self.history.append(value)
        bisect.insort(self._ordered, value)
        while len(self.history) > settings.loss_spike_window:
            oldest = self.history.pop(0)
            del self._ordered[bisect.bisect_left(self._ordered, oldest)]


class SpikeRule:
    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings

    def evaluate(self, window: SpikeWindow, step: int | None = None) -> Verdict:
        settings = self.settings
        state = window.state(settings)
        if window.diverged is not None:
            onset, level, value = window.diverged
            reason = (
                f"diverged: the loss spiked at step {onset:,} and has not come back "
                f"({value:.4g} now, {level:.4g} before)"
            )
            return Verdict(RED, reason, step, sticky=True)
        if state == RED:
            count = len(window.recent_onsets(settings))
            reason = f"{count} loss spikes within {settings.loss_spike_window} readings"
            return Verdict(RED, reason, step)
        if window.open is not None:
            onset, level, _, peak = window.open
            reason = (
                f"loss spiked to {peak:.4g} at step {onset:,} (level {level:.4g}); not back yet"
            )
            relearning = window.gradient_level()
            if window.open_readings >= settings.loss_spike_patience and relearning is not None:
                reason += (
                    f", but relearning: the layers' gradients are {relearning:.2g}x "
                    "their level before it"
                )
            return Verdict(AMBER, reason, step)
        if state == AMBER and window.recovered is not None:
            onset, back, peak = window.recovered
            reason = f"loss spiked to {peak:.4g} at step {onset:,} and came back by step {back:,}"
            return Verdict(AMBER, reason, step)
        if state == GREY:
            have, need = len(window.history), settings.loss_spike_min_history
            return Verdict(GREY, f"no verdict yet: {have} of {need} loss readings", step)
        return Verdict(GREEN, "", step)


class SpikeJudge(Judge[SpikeWindow]):
    signal = "spike"
    window_type = SpikeWindow
    rank = 5

    def __init__(self, spec: HealthSpec, window: SpikeWindow | None = None) -> None:
        super().__init__(spec, window)
        self.loss_key = main_loss_key(spec.roles)

    @classmethod
    def same_setup(cls, old: HealthSpec, new: HealthSpec) -> bool:
        return main_loss_key(old.roles) == main_loss_key(new.roles)

    def keys(self) -> set[str]:
        return {self.loss_key}

    def feed(self, ctx: FeedContext) -> None:
        """Every reading is an evaluation point; a verdict is worded only where it may change
        the badge, so thousands of readings in a long segment stay a tight loop."""
        series = ctx.rows.metrics.get(self.loss_key)
        if series is None:
            return
        settings, window, gate = ctx.spec.settings, self.window, ctx.gate(self.signal)
        rule = SpikeRule(settings)
        gradients = layers_by_step(ctx.rows.layers.get(GRAD_NORM, {}))
        gradient_steps, taken = sorted(gradients), 0
        for step, value in zip(*series, strict=True):
            while taken < len(gradient_steps) and gradient_steps[taken] <= step:
                window.take_gradients(gradients[gradient_steps[taken]])
                taken += 1
            derived = window.take(step, value, settings)
            if derived:
                ctx.derived += derived
            if gate.holds(window.state(settings)):
                continue
            verdict = rule.evaluate(window, step)
            if gate.update(verdict):
                change = Transition(self.signal, gate.state, step, verdict.reason)
                ctx.judged.append((step, self.rank, change))
        for later in gradient_steps[taken:]:  # a watched step whose loss is not logged
            window.take_gradients(gradients[later])


SPEC = SignalSpec(
    name="spike",
    column="spike",
    title="Loss spikes",
    summary="Main-loss spikes: recovered (amber), repeated or never recovered (red)",
    explain=lambda s: (
        f"A spike is a main-loss value over {s.loss_spike_k:g} robust deviations, "
        f"{s.loss_spike_rtol:.0%} of it and {s.loss_spike_floor:.0%} of the starting loss above "
        f"the median of the last {s.loss_spike_window} readings. "
        "Amber while a spike is open and for a while after it recovers (healthy runs spike too); "
        f"red when the loss has not come back within {s.loss_spike_patience} readings or "
        f"{s.loss_spike_repeat} spikes come within {s.loss_spike_window} readings. "
        "Where watch() records gradients, a spike past that stays amber while the layers' "
        f"gradients are {s.loss_spike_relearning:g}-{1 / s.loss_spike_relearning:g}x their level "
        "before it (relearning)."
    ),
    missing="not judged: log the main loss as `loss` (or name it with mon.roles(loss=...))",
    reads=(LOSS,),
    judge=SpikeJudge,
)
