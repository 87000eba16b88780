"""`progress`: a live process whose training step stopped advancing, or slowed to a crawl.

Read at every segment the run sends, heartbeats included (an idle collector sends an empty
segment every `heartbeat_interval`, 10 s by default): the segment's send time and the highest
step seen so far. Each time the step advances, the rate since the previous advance (steps per
second) is kept.

- Stalled (red): the step has not advanced for `progress_stall_k` times the run's own median
  time per step, and at least `progress_stall_floor` seconds (a validation pass or a checkpoint
  save must not look like a hang; raise the floor where they take longer) while segments keep
  arriving: the process is alive, its training loop is not. Clears when the step moves again.
- Slowed (amber): the median rate of the last `progress_window` advances is under
  `progress_slow` times the median of the first `progress_baseline` (the run's own baseline).

This is the one signal judged on time rather than on steps alone: its verdicts depend on when
segments were sent, not only on what they hold. A run that ended (its final segment) is never
stalled; a process that died sends nothing and turns `stale` instead.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from trainlight.collectors.health.judge import FeedContext, Judge
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict
from trainlight.collectors.wire import PROGRESS_SLOW, PROGRESS_STALLED

MIN_RATES = 3  # advances measured before any verdict


@dataclass
class ProgressWindow:
    top: int | None = None  # the highest step seen
    advanced_at: float | None = None  # when it was first seen (a segment's send time)
    first_rates: list[float] = field(default_factory=list)  # steps/s, until the baseline is set
    rates: list[float] = field(default_factory=list)  # the latest steps/s, one per advance
    now: float | None = None  # the latest segment's send time
    ended: bool = False  # the run's final segment arrived
    flagged: str = ""  # the state whose derived row was written (one row per episode)

    def take(self, top: int | None, sent_at: float, s: HealthSettings) -> None:
        self.now = max(sent_at, self.now or sent_at)
        if top is None or (self.top is not None and top <= self.top):
            return
        if self.top is not None and self.advanced_at is not None and sent_at > self.advanced_at:
            rate = (top - self.top) / (sent_at - self.advanced_at)
            self.rates = [*self.rates, rate][-s.progress_window :]
            if len(self.first_rates) < s.progress_baseline:
                self.first_rates.append(rate)
        self.top, self.advanced_at = top, sent_at

    def seconds_per_step(self) -> float:
        return 1.0 / statistics.median(self.rates)

    def idle(self) -> float:
        return 0.0 if self.now is None or self.advanced_at is None else self.now - self.advanced_at

    def patience(self, s: HealthSettings) -> float:
        return max(s.progress_stall_k * self.seconds_per_step(), s.progress_stall_floor)

    def slowdown(self, s: HealthSettings) -> float | None:
        """Baseline rate / recent rate, once both are known."""
        if len(self.first_rates) < s.progress_baseline or len(self.rates) < s.progress_window:
            return None
        recent = statistics.median(self.rates)
        return statistics.median(self.first_rates) / recent if recent > 0 else float("inf")

    def state(self, s: HealthSettings) -> str:
        if len(self.rates) < MIN_RATES:
            return GREY
        if not self.ended and self.idle() > self.patience(s):
            return RED
        slowdown = self.slowdown(s)
        return AMBER if slowdown is not None and slowdown > 1 / s.progress_slow else GREEN


class ProgressRule:
    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings

    def evaluate(self, window: ProgressWindow) -> Verdict:
        s = self.settings
        state = window.state(s)
        if state == GREY:
            return Verdict(GREY, f"no verdict yet: {len(window.rates)} of {MIN_RATES} advances")
        if state == RED:
            minutes = window.idle() / 60
            return Verdict(
                RED,
                f"stalled at step {window.top:,} for {minutes:.1f} min (about "
                f"{window.seconds_per_step():.2g} s per step before)",
                window.top,
            )
        if state == AMBER:
            rate = statistics.median(window.rates)
            return Verdict(
                AMBER,
                f"throughput fell {window.slowdown(s):.1f}x by step {window.top:,} "
                f"({rate:.3g} steps/s, was {statistics.median(window.first_rates):.3g})",
                window.top,
            )
        return Verdict(GREEN, "", window.top)


class ProgressJudge(Judge[ProgressWindow]):
    signal = "progress"
    window_type = ProgressWindow
    rank = 8

    def feed(self, ctx: FeedContext) -> None:
        """Every segment is an evaluation point (a heartbeat is how a stall shows)."""
        if ctx.sent_at is None:  # fed without a send time (a replay of bare tables): no clock
            return
        window, settings = self.window, ctx.spec.settings
        window.take(ctx.top_step, ctx.sent_at, settings)
        window.ended = window.ended or ctx.final
        verdict = ProgressRule(settings).evaluate(window)
        point = window.top if window.top is not None else 0
        if verdict.state in (RED, AMBER) and window.flagged != verdict.state:
            value = window.idle() if verdict.state == RED else window.slowdown(settings) or 0.0
            ctx.derived.append(
                (point, PROGRESS_STALLED if verdict.state == RED else PROGRESS_SLOW, value)
            )
        window.flagged = verdict.state if verdict.state in (RED, AMBER) else ""
        ctx.judge(point, self.rank, self.signal, verdict)


SPEC = SignalSpec(
    name="progress",
    column="pace",
    title="Progress",
    summary="A live process whose step stopped advancing (red) or slowed down (amber)",
    explain=lambda s: (
        f"Red when segments (heartbeats) keep arriving but the step has not advanced for "
        f"{s.progress_stall_k:g}x the run's median time per step and at least "
        f"{s.progress_stall_floor:g} s; amber when the median rate of the last "
        f"{s.progress_window} advances is under {s.progress_slow:g}x that of the first "
        f"{s.progress_baseline}."
    ),
    missing="not judged yet: needs a few segments whose step advanced",
    timed=True,
    judge=ProgressJudge,
)
