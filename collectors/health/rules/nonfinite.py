"""`nonfinite`: red, for good, at the first NaN or Inf in a logged value or watched activation."""

from __future__ import annotations

from dataclasses import dataclass

from trainlight.collectors.health.observations import SegmentRows
from trainlight.collectors.health.verdict import GREEN, GREY, RED, Verdict


@dataclass
class NonfiniteWindow:
    seen_data: bool = False
    first_step: int | None = None
    first_what: str = ""

    def update(self, rows: SegmentRows) -> bool:
        """Take a segment's rows; True if they bear on this signal."""
        if not rows.has_metrics:
            return False
        self.seen_data = True
        if rows.nonfinite is not None and self.first_step is None:
            self.first_step, self.first_what = rows.nonfinite.step, rows.nonfinite.what
        return True


class NonfiniteRule:
    def evaluate(self, window: NonfiniteWindow) -> Verdict:
        if window.first_step is not None:
            return Verdict(
                RED,
                f"{window.first_what} at step {window.first_step:,}",
                window.first_step,
                sticky=True,
            )
        return Verdict(GREEN if window.seen_data else GREY)
