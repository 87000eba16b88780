"""`nonfinite`: red, for good, at the first NaN or Inf in a logged value or watched activation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from trainlight.collectors.health.judge import RuleJudge
from trainlight.collectors.health.observations import SegmentRows
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import GREEN, GREY, RED, Verdict


@dataclass
class NonfiniteWindow:
    seen_data: bool = False
    first_step: int | None = None
    first_what: str = ""

    def update(self, rows: SegmentRows, _settings: HealthSettings) -> Iterator[int]:
        """Take complete steps' rows; yields the evaluation points: the first step with data
        (green) and the first non-finite value (red), once each."""
        if rows.first_step is None:
            return
        bad = rows.nonfinite if self.first_step is None else None
        if not self.seen_data:
            self.seen_data = True
            if bad is None or bad.step > rows.first_step:
                yield rows.first_step
        if bad is not None:
            self.first_step, self.first_what = bad.step, bad.what
            yield bad.step


class NonfiniteRule:
    def __init__(self, _settings: HealthSettings) -> None:
        pass  # no thresholds: any non-finite value is red

    def evaluate(self, window: NonfiniteWindow) -> Verdict:
        if window.first_step is not None:
            return Verdict(
                RED,
                f"{window.first_what} at step {window.first_step:,}",
                window.first_step,
                sticky=True,
            )
        return Verdict(GREEN if window.seen_data else GREY)


class NonfiniteJudge(RuleJudge[NonfiniteWindow]):
    signal = "nonfinite"
    window_type = NonfiniteWindow
    rule = NonfiniteRule
    rank = 0


SPEC = SignalSpec(
    name="nonfinite",
    column="NaN",
    title="Non-finite values",
    summary="NaN or ±Inf in logged scalars, activations or LCA",
    explain=lambda _: (
        "Red as soon as any logged scalar, activation or LCA gradient is NaN or ±Inf."
    ),
    missing="no values judged yet",
    judge=NonfiniteJudge,
)
