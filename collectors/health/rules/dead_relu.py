"""`dead_relu`: dead units per layer, and spikes of "undead" units waking up on stale weights.

Green while every layer has < `dead_amber` dead units; amber at or above it; red at `dead_red`,
for a wholly dead layer, or for an undead spike: a window whose undead count exceeds the median
plus k·MAD of that layer's recent windows (MAD floored at one unit, so a quiet layer is not
flagged for a single waking unit).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from trainlight.collectors.health.judge import RuleJudge
from trainlight.collectors.health.observations import SegmentRows
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict
from trainlight.collectors.wire import DEAD_FRAC, UNDEAD


@dataclass
class DeadReluWindow:
    dead_frac: dict[str, float] = field(default_factory=dict)  # latest per layer
    step: int | None = None
    undead_history: dict[str, list[float]] = field(default_factory=dict)
    spike: tuple[str, float, float, int] | None = None  # (layer, count, threshold, step)
    spike_left: int = 0  # readings the last spike still holds the badge red
    layer_order: list[str] = field(default_factory=list)

    def update(self, rows: SegmentRows, settings: HealthSettings) -> Iterator[int]:
        """Take complete steps' rows; yields each reading (a step with layer rows) once the
        window reflects it: the evaluation points, so a spike holds for `spike_hold` readings."""
        readings: dict[int, list[tuple[bool, str, float]]] = {}
        for layer, (steps, values) in rows.layers.get(DEAD_FRAC, {}).items():
            if layer not in self.layer_order:
                self.layer_order.append(layer)
            for step, value in zip(steps, values, strict=True):
                readings.setdefault(step, []).append((False, layer, value))
        for layer, (steps, values) in rows.layers.get(UNDEAD, {}).items():
            for step, count in zip(steps, values, strict=True):
                readings.setdefault(step, []).append((True, layer, count))
        for step in sorted(readings):
            self.spike_left = max(0, self.spike_left - 1)
            for undead, layer, value in sorted(readings[step], key=lambda r: (r[0], r[1])):
                if undead:
                    self._judge_undead(layer, step, value, settings)
                elif value == value:  # a NaN fraction is the nonfinite signal's business
                    self.dead_frac[layer] = value
            self.step = step if self.step is None else max(self.step, step)
            yield step

    def _judge_undead(self, layer: str, step: int, count: float, settings: HealthSettings) -> None:
        history = self.undead_history.setdefault(layer, [])
        threshold = undead_threshold(history, settings)
        if threshold is not None and count > threshold:
            self.spike = (layer, count, threshold, step)
            self.spike_left = settings.spike_hold
        history.append(count)
        del history[: -settings.undead_history]


def undead_threshold(history: Sequence[float], settings: HealthSettings) -> float | None:
    """The undead count above which a layer's next window is a spike, given its recent windows
    (median + k·MAD, MAD floored at one unit); None while the history is too short to judge."""
    if len(history) < settings.undead_min_history:
        return None
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    return median + settings.undead_k * max(mad, 1.0)


def undead_spikes(
    steps: Sequence[float], counts: Sequence[float], settings: HealthSettings
) -> list[tuple[float, float]]:
    """(step, count) of the windows of one layer's undead series that the rule calls a spike:
    what the run page rings, judged by the rule's own threshold."""
    history: list[float] = []
    spikes = []
    for step, count in zip(steps, counts, strict=True):
        threshold = undead_threshold(history, settings)
        if threshold is not None and count > threshold:
            spikes.append((step, count))
        history.append(count)
        del history[: -settings.undead_history]
    return spikes


class DeadReluRule:
    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings

    def evaluate(self, window: DeadReluWindow) -> Verdict:
        if window.spike_left and window.spike is not None:
            layer, count, threshold, step = window.spike
            return Verdict(
                RED,
                f"undead spike in layer {layer!r}: {count:g} units woke up "
                f"(threshold {threshold:.3g}) at step {step:,}",
                step,
            )
        if not window.dead_frac:
            return Verdict(GREY)
        layer, frac = max(window.dead_frac.items(), key=lambda item: (item[1], item[0]))
        where = f"layer {layer!r} has {frac:.0%} dead units at step {window.step:,}"
        if frac >= self.settings.dead_red or frac >= 1.0:
            return Verdict(RED, where, window.step)
        if frac >= self.settings.dead_amber:
            return Verdict(AMBER, where, window.step)
        return Verdict(GREEN, "", window.step)


class DeadReluJudge(RuleJudge[DeadReluWindow]):
    signal = "dead_relu"
    window_type = DeadReluWindow
    rule = DeadReluRule
    rank = 1
    state_key = "dead"  # as saved since the first release


SPEC = SignalSpec(
    name="dead_relu",
    column="dead",
    title="Dead and undead units",
    summary="Dead / undead ReLU units",
    explain=lambda s: (
        f"Units that never fire in a window are dead. Amber at {s.dead_amber:.0%} dead in a "
        f"layer, red at {s.dead_red:.0%}, a whole dead layer, or a spike of units waking up "
        f"(undead: more than the median + {s.undead_k:g}·MAD of the layer's recent windows)."
    ),
    missing="not measured: call mon.watch(model)",
    needs=("watch",),
    judge=DeadReluJudge,
)
