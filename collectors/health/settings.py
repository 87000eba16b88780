"""Every threshold of every health rule, with its documented default (DESIGN.md §5).

Settings travel with the run (in each segment's header), so the server judges a run by the
thresholds its training script chose, and a late `trainlight ingest` judges it identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

_DERIVED = ("catch_window", "catch_patience", "runaway_patience")  # None: from the time scale


@dataclass(frozen=True)
class HealthSettings:
    # -- hysteresis: a new state must be seen on this many consecutive evaluations with new data
    confirm: int = 2
    # -- dead_relu (per layer, per activation window)
    dead_amber: float = 0.10  # fraction of dead units in a layer that turns amber
    dead_red: float = 0.50  # ... that turns red (a wholly dead layer is always red)
    undead_k: float = 6.0  # undead spike: count > median + k * MAD of the layer's recent windows
    undead_history: int = 20  # windows kept per layer for the median/MAD
    undead_min_history: int = 5  # windows needed before spikes are judged
    spike_hold: int = 3  # evaluations an undead spike keeps the badge red
    # -- catch (needs roles adversary/content; gradient_penalty optional). Windows and patience
    # follow the run's own time scale (time_scale.py); the step counts below override them.
    catch_window: int | None = None  # steps per window (None: catch_window_points x cadence)
    catch_window_points: int = 20  # content readings per window when the window is derived
    plateau_rho: float = 0.1  # levelled off: the latest half of steps brought < rho of the drop
    ema_alpha: float = 0.05  # EMA smoothing of the content loss (per logged value)
    catch_kappa: float = 0.25  # adversary window mean rising to (1 + kappa) x its minimum: catch
    catch_gamma: float = 3.0  # adversary/GP window std this many times its early baseline: catch
    baseline_windows: int = 2  # first windows that set the baseline std
    catch_patience: int | None = None  # steps after levelling off without a catch: red
    catch_patience_ratio: float = 2.0  # derived patience: this x the levelled-off step
    # -- runaway (needs mon.reference + mon.outputs)
    runaway_trend_points: int = 5  # recent distance readings used to judge "shrinking"
    runaway_shrink: float = 0.10  # relative drop over those readings that counts as shrinking
    runaway_min_effect: float = 0.5  # |median diff| / reference IQR needed for red
    runaway_patience: int | None = None  # steps stuck (no content role) before red; None:
    # runaway_min_readings readings and 1/10 of the declared length
    runaway_min_readings: int = 10
    # -- lca (needs mon.lca)
    lca_window: int = 10  # measured steps per window
    lca_red_windows: int = 3  # consecutive windows with a positive total LCA that turn red
    # -- spike (the main loss: `loss`, or mon.roles(loss=...)); counts are loss readings
    loss_spike_window: int = 50  # readings whose median/MAD set the level
    loss_spike_k: float = 6.0  # a spike is > k robust deviations (1.4826 MAD) above the level
    loss_spike_rtol: float = 0.3  # ... and > rtol x |level| above it
    loss_spike_floor: float = 0.2  # ... and > this x the starting level (near-0 losses)
    loss_spike_min_history: int = 20  # readings needed before spikes are judged
    loss_spike_patience: int = 50  # readings a spike may stay open before it counts as diverged
    loss_spike_repeat: int = 3  # spike onsets within the window that turn red
    loss_spike_relearning: float = 0.25  # past its patience a spike stays amber while the layers'
    # gradient norms (watch) are this to 1/this x their level before it: 0.43-1.6 relearning,
    # <= 0.14 stuck on the LM batches; 0.15-0.4 judge them alike (docs/design.md §5)
    loss_spike_relearn_every: int = 200  # ... and its loss falls 1% every this many readings
    # (the relearning LMs: 10-11% lower 200 readings past the patience)
    # -- overfit (validation loss `val_loss`, ... or mon.roles(val_loss=...)); counts are
    # validation readings. Defaults measured on bench/overfit_batch.py (docs/design.md §5).
    overfit_smooth: int = 1  # each reading is the median of the last this many (noisy ones: 3)
    overfit_min_evals: int = 5  # validation readings needed before a verdict
    overfit_tol: float = 0.05  # above its best by more than this (relative): rising
    overfit_rising: int = 3  # consecutive readings rising while the train loss has not: amber
    overfit_margin: float = 0.25  # risen past its best by this much (relative) ...
    overfit_metric_drop: float = 0.05  # ... with the validation score this far under its best
    overfit_patience: int = 2  # ... for this many consecutive readings: red
    overfit_train_window: int = 20  # train-loss readings whose median is its level at a reading
    # -- gradients (needs mon.watch); read at the steps watch observes
    gradients_baseline: int = 5  # first readings whose median is a layer's early gradient level
    gradients_explode: float = 100.0  # exploding: gradient norm over this x its early level
    gradients_vanish: float = 3e-3  # vanishing: gradient RMS under this x the largest layer's
    gradients_ratio_high: float = 0.1  # an update moving over this fraction of a layer's weights
    gradients_patience: int = 100  # steps out of range (and 3 readings) with no loss progress: red
    gradients_progress: float = 0.05  # the main loss falling this much (relative) is learning
    # -- progress (every run: segments' send times, heartbeats included); counts are advances
    progress_stall_k: float = 10.0  # stalled: no new step for this x its median time per step
    progress_stall_floor: float = 900.0  # ... and at least these seconds (evals, checkpoints)
    progress_baseline: int = 20  # first step advances whose median rate is the baseline
    progress_window: int = 20  # latest advances whose median rate is compared with it
    progress_slow: float = 0.5  # recent rate under this x the baseline: amber
    # -- repro (needs mon.predictions on replicas: runs of one group)
    repro_budget: float = 0.1  # relative PD a replica pair may reach (derived: rules/repro.py)

    def __post_init__(self) -> None:
        for name in (
            "confirm",
            "undead_history",
            "undead_min_history",
            "spike_hold",
            "catch_window_points",
            "baseline_windows",
            "runaway_trend_points",
            "runaway_min_readings",
            "catch_window",
            "catch_patience",
            "runaway_patience",
            "lca_window",
            "lca_red_windows",
            "loss_spike_window",
            "loss_spike_min_history",
            "loss_spike_patience",
            "loss_spike_repeat",
            "loss_spike_relearn_every",
            "overfit_smooth",
            "overfit_min_evals",
            "overfit_rising",
            "overfit_patience",
            "overfit_train_window",
            "gradients_baseline",
            "gradients_patience",
            "progress_baseline",
            "progress_window",
        ):
            value = getattr(self, name)
            if value is None and name in _DERIVED:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"health setting {name} must be an integer >= 1, got {value!r}")
        for name in (
            "dead_amber",
            "dead_red",
            "plateau_rho",
            "ema_alpha",
            "runaway_shrink",
            "progress_slow",
            "loss_spike_relearning",
        ):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"health setting {name} must be in (0, 1], got {value!r}")
        for name in (
            "undead_k",
            "catch_kappa",
            "catch_gamma",
            "runaway_min_effect",
            "repro_budget",
            "catch_patience_ratio",
            "loss_spike_k",
            "loss_spike_rtol",
            "loss_spike_floor",
            "overfit_tol",
            "overfit_margin",
            "overfit_metric_drop",
            "gradients_explode",
            "gradients_vanish",
            "gradients_ratio_high",
            "gradients_progress",
            "progress_stall_k",
            "progress_stall_floor",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"health setting {name} must be > 0, got {getattr(self, name)!r}")
        if self.loss_spike_min_history > self.loss_spike_window:
            raise ValueError("loss_spike_min_history must not exceed loss_spike_window")
        if self.dead_amber > self.dead_red:
            raise ValueError(
                f"dead_amber ({self.dead_amber}) must not exceed dead_red ({self.dead_red})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HealthSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown health settings {sorted(unknown)}; known: {sorted(known)}")
        for name, value in data.items():
            allowed = _TYPES[_FIELD_TYPES[name]]
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise ValueError(
                    f"health setting {name} must be of type {_FIELD_TYPES[name]}, got {value!r}"
                )
        return cls(**dict(data))


# Types a setting may have in a header (JSON): checked strictly, so `lca_window="10"` is refused
# where it arrives instead of failing later inside a rule.
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "int | None": (int, type(None)),
}
_FIELD_TYPES = {f.name: str(f.type) for f in fields(HealthSettings)}
assert set(_FIELD_TYPES.values()) <= set(_TYPES), _FIELD_TYPES
