"""The `runaway` signal: its declaration, and how a segment's readings reach its rule.

The window and the rule are in runaway.py, the block judging in runaway_block.py (which imports
the window, hence this third module). With a content role, a reading is judged against the content
plateau in force at its step, which the catch judge found in the same segment (`PLATEAUS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from trainlight.collectors.health.judge import FeedContext, Judge
from trainlight.collectors.health.observations import SegmentRows, Series
from trainlight.collectors.health.rules import runaway_block
from trainlight.collectors.health.rules.catch import PLATEAUS
from trainlight.collectors.health.rules.runaway import KEYS, RunawayRule, RunawayWindow
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import Transition


class RunawayJudge(Judge[RunawayWindow]):
    signal = "runaway"
    window_type = RunawayWindow
    rank = 3

    def keys(self) -> set[str]:
        return set(KEYS)

    def feed(self, ctx: FeedContext) -> None:
        window, settings = self.window, ctx.spec.settings
        window.planned = ctx.spec.planned_steps
        plateaus = ctx.shared.get(PLATEAUS)
        if plateaus is None:
            plateaus = [(-1, None)]
        else:
            window.has_content_role = True
        for part, plateau in _parts(ctx.rows, plateaus):
            window.content_flat_since = plateau
            block = runaway_block.advance(window, part, settings)
            if block is not None:
                self._judge_block(ctx, block)

    def _judge_block(self, ctx: FeedContext, block: runaway_block.Block) -> None:
        """Every reading of the block is an evaluation; only a change is worded."""
        rule = RunawayRule(ctx.spec.settings)
        for i in ctx.gate(self.signal).run(block.states):
            verdict = rule.evaluate(block.window_at(i))
            step = block.steps[i]
            change = Transition(self.signal, block.states[i], step, verdict.reason)
            ctx.judged.append((step, self.rank, change))


def _parts(
    rows: SegmentRows, plateaus: list[tuple[int, int | None]]
) -> Iterator[tuple[SegmentRows, int | None]]:
    """The runaway rows between catch's window closes, each with the plateau start in force."""
    if len(plateaus) == 1:
        yield rows, plateaus[0][1]
        return
    bounds = [step for step, _ in plateaus[1:]]
    for i, (_, plateau) in enumerate(plateaus):
        low = plateaus[i][0] if i else None
        high = bounds[i] if i < len(bounds) else None
        yield replace(rows, metrics=_between(rows.metrics, KEYS, low, high)), plateau


def _between(
    metrics: Mapping[str, Series], keys: Iterable[str], low: int | None, high: int | None
) -> dict[str, Series]:
    """The series of `keys` restricted to low <= step < high (None: unbounded)."""
    out: dict[str, Series] = {}
    for key in keys:
        if key in metrics:
            pairs = [
                (s, v)
                for s, v in zip(*metrics[key], strict=True)
                if (low is None or s >= low) and (high is None or s < high)
            ]
            out[key] = ([s for s, _ in pairs], [v for _, v in pairs])
    return out


SPEC = SignalSpec(
    name="runaway",
    column="runaway",
    title="Runaway (generated vs reference)",
    summary="Generated outputs drifting away from the reference",
    explain=lambda s: (
        "KS distance between the generator's recent per-sample means and the real data. Green "
        "below the critical value; red when large (effect ≥ "
        f"{s.runaway_min_effect:g} reference IQR) and not shrinking by {s.runaway_shrink:.0%} "
        f"over {s.runaway_trend_points} readings."
    ),
    missing="not judged: call mon.reference(real_batch) and mon.outputs(step, fake)",
    needs=("reference", "outputs"),
    reads=KEYS,
    depends_on=("catch",),
    judge=RunawayJudge,
)
