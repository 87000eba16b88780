"""`gradients`: per-layer gradient norms and update ratios out of their healthy range, for long.

Read at each step `watch` observed (its `grad_norm` and `update_ratio` layer rows, one per layer
with parameters). A layer is out of range at a reading when:

- its gradient is not finite (red at once: the step is broken);
- exploding: its gradient norm is over `gradients_explode` times its own early level (the
  median of its first `gradients_baseline` readings): against its own start, so a run that
  starts with large gradients is not judged by them;
- vanishing: its gradient's RMS (norm / √parameters) is under `gradients_vanish` times the
  largest layer's at the same step (exactly 0: a dead layer). Against the other layers, not
  against the start: a converged run's gradients all fall by orders of magnitude together, and
  that is healthy. RMS, not norm: a LayerNorm's few parameters have a small norm by size alone;
- moving everything: its update ratio ‖Δθ‖/‖θ‖ is over `gradients_ratio_high` (a step that
  rewrites a tenth of a layer's weights is not a small step).

Amber while any layer is out of range. Red when layers have been out of range at every reading
for `gradients_patience` steps (and at least `MIN_READINGS_OUT` readings: steps, not readings,
so `watch(every=1)` and `every=50` wait alike) and the main loss has not fallen by
`gradients_progress` (relative, median of its last 20 readings) since: a network that learns
while a layer's gradient sits low, or that leaves a plateau, is healthy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from trainlight.collectors.health.judge import FeedContext, HealthSpec, Judge
from trainlight.collectors.health.observations import layers_by_step
from trainlight.collectors.health.rules.spike import main_loss_key
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict
from trainlight.collectors.wire import GRAD_NORM, PARAM_COUNT, UPDATE_RATIO

LOSS_WINDOW = 20  # main-loss readings whose median is its level
MIN_READINGS_OUT = 3  # readings out of range before red, however long apart
KINDS = ("nonfinite", "exploding", "moving", "vanishing")  # in the order a reason names them


@dataclass(frozen=True)
class Finding:
    layer: str
    kind: str  # "nonfinite", "exploding", "vanishing", "moving"
    value: float  # the figure judged: the norm, its ratio to the early level or the largest
    # layer's, or the update ratio

    def words(self) -> str:
        if self.kind == "nonfinite":
            return f"layer {self.layer!r}: non-finite gradient"
        if self.kind == "exploding":
            return f"layer {self.layer!r}: gradient {self.value:.3g}x its early level"
        if self.kind == "vanishing":
            return f"layer {self.layer!r}: gradient RMS {self.value:.2g} of the largest layer's"
        return f"layer {self.layer!r}: each step moves {self.value:.2g} of its weights"


def findings(
    grads: Mapping[str, float],
    ratios: Mapping[str, float],
    early: Mapping[str, float],
    sizes: Mapping[str, float],
    settings: HealthSettings,
) -> list[Finding]:
    """The out-of-range layers of one reading: gradient norms and update ratios per layer, each
    layer's early level (absent until known) and parameter count (absent: RMS is the norm).
    Also what the evidence heatmaps mark."""
    found = [Finding(layer, "nonfinite", g) for layer, g in grads.items() if not math.isfinite(g)]
    rms = {}
    for layer, g in grads.items():
        if not math.isfinite(g):
            continue
        level = early.get(layer)
        if level is not None and level > 0 and g > settings.gradients_explode * level:
            found.append(Finding(layer, "exploding", g / level))
        else:
            rms[layer] = g / math.sqrt(sizes[layer]) if sizes.get(layer, 0) > 0 else g
    # Beside an exploding layer every other one would look vanishing: compare with the rest.
    largest = max(rms.values(), default=0.0)
    for layer, g in rms.items():
        if largest > 0 and g < settings.gradients_vanish * largest:
            found.append(Finding(layer, "vanishing", g / largest))
    for layer, r in ratios.items():
        if math.isfinite(r) and r > settings.gradients_ratio_high:
            found.append(Finding(layer, "moving", r))
    return sorted(found, key=lambda f: KINDS.index(f.kind))


@dataclass
class GradientsWindow:
    early: dict[str, list[float]] = field(default_factory=dict)  # first readings per layer
    sizes: dict[str, float] = field(default_factory=dict)  # parameters per layer
    readings: int = 0
    loss_recent: list[float] = field(default_factory=list)
    out_since: tuple[int, float | None] | None = None  # (step, loss level) a run out began
    out_readings: int = 0  # consecutive readings out of range
    latest: list[tuple[str, str, float]] = field(default_factory=list)  # the last findings
    step: int | None = None  # the latest reading's step
    broken: tuple[int, str] | None = None  # (step, layer) of a non-finite gradient: for good

    def levels(self, settings: HealthSettings) -> dict[str, float]:
        need = settings.gradients_baseline
        return {k: statistics.median(v) for k, v in self.early.items() if len(v) >= need}

    def loss_level(self) -> float | None:
        return statistics.median(self.loss_recent) if self.loss_recent else None

    def take_loss(self, values: list[float]) -> None:
        finite = [v for v in values if math.isfinite(v)]
        self.loss_recent = [*self.loss_recent, *finite][-LOSS_WINDOW:]

    def take(
        self, step: int, grads: dict[str, float], ratios: dict[str, float], s: HealthSettings
    ) -> None:
        self.readings += 1
        self.step = step
        found = findings(grads, ratios, self.levels(s), self.sizes, s)
        for layer, g in grads.items():
            kept = self.early.setdefault(layer, [])
            if len(kept) < s.gradients_baseline and math.isfinite(g) and g > 0:
                kept.append(g)
        self.latest = [(f.layer, f.kind, f.value) for f in found]
        bad = next((f for f in found if f.kind == "nonfinite"), None)
        if bad is not None and self.broken is None:
            self.broken = (step, bad.layer)
        if not found:
            self.out_since, self.out_readings = None, 0
            return
        if self.out_since is None:
            self.out_since = (step, self.loss_level())
        self.out_readings += 1

    def state(self, s: HealthSettings) -> str:
        if self.broken is not None:
            return RED
        if self.readings < s.gradients_baseline:
            return GREY
        if self.out_since is None:
            return GREEN
        lasted = self.step is not None and self.step - self.out_since[0] >= s.gradients_patience
        if lasted and self.out_readings >= MIN_READINGS_OUT and not self.learning(s):
            return RED
        return AMBER

    def learning(self, s: HealthSettings) -> bool:
        """Whether the main loss fell enough since the layer went out of range."""
        assert self.out_since is not None
        then, now = self.out_since[1], self.loss_level()
        if then is None or now is None:
            return False
        return now < then - s.gradients_progress * abs(then)


class GradientsRule:
    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings

    def evaluate(self, window: GradientsWindow) -> Verdict:
        s = self.settings
        state = window.state(s)
        if window.broken is not None:
            step, layer = window.broken
            return Verdict(RED, f"non-finite gradient in layer {layer!r}", step, sticky=True)
        if state == GREY:
            return Verdict(GREY, f"no verdict yet: {window.readings} of {s.gradients_baseline}")
        if state == GREEN:
            return Verdict(GREEN, "")
        assert window.out_since is not None
        since = window.out_since[0]
        worst = [Finding(*f).words() for f in window.latest[:3]]
        more = len(window.latest) - len(worst)
        said = "; ".join(worst) + (f"; {more} more" if more > 0 else "")
        tail = f" (out of range since step {since:,}" + (
            "; the loss not improving)" if state == RED else ")"
        )
        return Verdict(state, said + tail, window.step)


class GradientsJudge(Judge[GradientsWindow]):
    signal = "gradients"
    window_type = GradientsWindow
    rank = 7

    def __init__(self, spec: HealthSpec, window: GradientsWindow | None = None) -> None:
        super().__init__(spec, window)
        self.loss_key = main_loss_key(spec.roles)

    def keys(self) -> set[str]:
        return {self.loss_key}

    def feed(self, ctx: FeedContext) -> None:
        """Each observed step with gradient rows is an evaluation point; the main-loss readings
        up to its step are taken first."""
        layers = ctx.rows.layers
        by_step = layers_by_step(layers.get(GRAD_NORM, {}))
        ratio_by_step = layers_by_step(layers.get(UPDATE_RATIO, {}))
        for sizes in layers_by_step(layers.get(PARAM_COUNT, {})).values():
            self.window.sizes.update(sizes)
        if not by_step:
            self.window.take_loss(ctx.rows.metrics.get(self.loss_key, ([], []))[1])
            return
        loss_steps, loss_values = ctx.rows.metrics.get(self.loss_key, ([], []))
        taken, rule, settings = 0, GradientsRule(ctx.spec.settings), ctx.spec.settings
        for step in sorted(by_step):
            upto = taken
            while upto < len(loss_steps) and loss_steps[upto] <= step:
                upto += 1
            self.window.take_loss(loss_values[taken:upto])
            taken = upto
            self.window.take(step, by_step[step], ratio_by_step.get(step, {}), settings)
            ctx.judge(step, self.rank, self.signal, rule.evaluate(self.window))
        self.window.take_loss(loss_values[taken:])


SPEC = SignalSpec(
    name="gradients",
    column="grads",
    title="Gradients and update ratios",
    summary="Per-layer gradients exploding or vanishing, or updates far too large, for long",
    explain=lambda s: (
        f"Per layer at each observed step: exploding (gradient norm over {s.gradients_explode:g}x "
        f"its early level), vanishing (gradient RMS under {s.gradients_vanish:g} of the largest "
        "layer's), or "
        f"each update moving over {s.gradients_ratio_high:g} of its weights. Amber while a "
        f"layer is out of range; red after {s.gradients_patience} steps out of range with "
        f"the main loss not {s.gradients_progress:.0%} lower since, or at once on a non-finite "
        "gradient."
    ),
    missing="not judged: call mon.watch(model) (gradients are measured on its observed steps)",
    needs=("watch",),
    reads=(GRAD_NORM, UPDATE_RATIO),
    judge=GradientsJudge,
)
