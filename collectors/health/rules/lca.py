"""`lca`: which layers help and which hurt, from Loss Change Allocation (Lan et al., 2019).

Measured steps are grouped into windows of `lca_window` measurements. At the end of a window:
amber when some layer's cumulative LCA over it is positive (that layer pushed the probe loss up);
red when the total was positive for `lca_red_windows` windows in a row (training is making the
probe loss worse). About half of a healthy net's parameters hurt at any step: the fraction of
helping parameters alone is never a fault, so it is not judged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from trainlight.collectors.health.judge import RuleJudge
from trainlight.collectors.health.observations import SegmentRows
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict
from trainlight.collectors.wire import LCA_TOTAL


@dataclass
class LcaWindow:
    measured: int = 0  # measurements in the open window
    first_step: int | None = None
    layer_sums: dict[str, float] = field(default_factory=dict)  # open window
    total: float = 0.0  # open window
    closed: int = 0
    positive_run: int = 0  # consecutive closed windows with a positive total
    positive_since: int | None = None
    worst_layer: tuple[str, float] | None = None  # of the last closed window, if it hurt
    last: tuple[int, int, float] | None = None  # (first step, last step, total) last closed

    def update(self, rows: SegmentRows, settings: HealthSettings) -> Iterator[int]:
        """Take complete steps' rows; yields the step that closed each window (the evaluation
        points)."""
        totals = rows.metrics.get(LCA_TOTAL)
        if totals is None:
            return
        layers = rows.layers.get("lca", {})
        per_step: dict[int, dict[str, float]] = {}
        for layer, (steps, values) in layers.items():
            for step, value in zip(steps, values, strict=True):
                per_step.setdefault(step, {})[layer] = value
        for step, total in zip(*totals, strict=True):
            if self._add(step, total, per_step.get(step, {}), settings):
                yield step

    def _add(
        self, step: int, total: float, layers: dict[str, float], settings: HealthSettings
    ) -> bool:
        """Add one measurement; True when it closed the window."""
        if self.first_step is None:
            self.first_step = step
        self.measured += 1
        self.total += total
        for layer, value in layers.items():
            self.layer_sums[layer] = self.layer_sums.get(layer, 0.0) + value
        if self.measured < settings.lca_window:
            return False
        hurting = [(name, s) for name, s in self.layer_sums.items() if s > 0]
        self.worst_layer = max(hurting, key=lambda item: item[1]) if hurting else None
        if self.total > 0:
            self.positive_since = self.positive_since if self.positive_run else self.first_step
            self.positive_run += 1
        else:
            self.positive_run, self.positive_since = 0, None
        self.last = (self.first_step, step, self.total)
        self.closed += 1
        self.measured, self.first_step, self.layer_sums, self.total = 0, None, {}, 0.0
        return True


class LcaRule:
    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings

    def evaluate(self, window: LcaWindow) -> Verdict:
        if window.last is None:
            return Verdict(GREY)
        first, last, total = window.last
        if window.positive_run >= self.settings.lca_red_windows:
            return Verdict(
                RED,
                f"the probe loss rose in {window.positive_run} windows in a row "
                f"(Σ LCA {total:+.3g} over steps {first:,}-{last:,}, rising since "
                f"step {window.positive_since:,})",
                last,
            )
        if window.worst_layer is not None:
            layer, hurt = window.worst_layer
            return Verdict(
                AMBER, f"layer {layer!r} hurt: LCA {hurt:+.3g} over steps {first:,}-{last:,}", last
            )
        return Verdict(GREEN, "", last)


class LcaJudge(RuleJudge[LcaWindow]):
    signal = "lca"
    window_type = LcaWindow
    rule = LcaRule
    rank = 4

    def keys(self) -> set[str]:
        return {LCA_TOTAL}


SPEC = SignalSpec(
    name="lca",
    column="LCA",
    title="Loss Change Allocation",
    summary="Loss Change Allocation: is training making the probe loss worse?",
    explain=lambda s: (
        "How much each layer's parameter updates lowered (helping, negative) or raised "
        f"(hurting, positive) the probe loss, over windows of {s.lca_window} measured steps. "
        f"Red when the total hurts for {s.lca_red_windows} windows in a row."
    ),
    missing="not measured: call mon.lca(model, probe_loss)",
    needs=("lca",),
    reads=(LCA_TOTAL,),
    judge=LcaJudge,
)
