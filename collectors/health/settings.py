"""Every threshold of every health rule, with its documented default (DESIGN.md §5).

Settings travel with the run (in each segment's header), so the server judges a run by the
thresholds its training script chose, and a late `trainlight ingest` judges it identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


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
    # -- catch (needs roles adversary/content; gradient_penalty optional), in steps
    catch_window: int = 500  # steps per window of the adversary/content statistics
    plateau_rho: float = 0.01  # content EMA relative change per window below this: plateau
    ema_alpha: float = 0.05  # EMA smoothing of the content loss (per logged value)
    catch_kappa: float = 0.25  # adversary window mean rising to (1 + kappa) x its minimum: catch
    catch_gamma: float = 3.0  # adversary/GP window std this many times its early baseline: catch
    baseline_windows: int = 2  # first windows that set the baseline std
    catch_patience: int = 5000  # steps of content plateau without a catch that turn red
    # -- runaway (needs mon.reference + mon.outputs)
    runaway_trend_points: int = 5  # recent distance readings used to judge "shrinking"
    runaway_shrink: float = 0.10  # relative drop over those readings that counts as shrinking
    runaway_min_effect: float = 0.5  # |median diff| / reference IQR needed for red
    runaway_patience: int = 5000  # steps large and not shrinking (without a content role): red
    # -- lca (needs mon.lca)
    lca_window: int = 10  # measured steps per window
    lca_red_windows: int = 3  # consecutive windows with a positive total LCA that turn red
    # -- repro (needs mon.predictions on replicas: runs of one group)
    repro_budget: float = 0.1  # relative PD a replica pair may reach (derived: rules/repro.py)

    def __post_init__(self) -> None:
        for name in (
            "confirm",
            "undead_history",
            "undead_min_history",
            "spike_hold",
            "catch_window",
            "baseline_windows",
            "catch_patience",
            "runaway_trend_points",
            "runaway_patience",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"health setting {name} must be an integer >= 1, got {value!r}")
        for name in ("dead_amber", "dead_red", "plateau_rho", "ema_alpha", "runaway_shrink"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"health setting {name} must be in (0, 1], got {value!r}")
        for name in (
            "undead_k",
            "catch_kappa",
            "catch_gamma",
            "runaway_min_effect",
            "repro_budget",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"health setting {name} must be > 0, got {getattr(self, name)!r}")
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
        return cls(**dict(data))
