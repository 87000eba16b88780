"""`repro`: are replicas of one configuration predicting the same things, within a budget?

Judged from the latest matched-step relative prediction difference (PD on the true label's
probability, or the top class's; collectors/health/prediction_difference.py) between a run and
each of its replicas (other runs of its `group` that record `mon.predictions`), with its bootstrap
band. The band decides, so a small probe set cannot turn the badge red on noise: red when some
mate is confidently above the budget (band bottom > budget), amber while a band straddles it.

Green also needs the predictions to have settled: replicas sharing their initialisation start
identical (PD 0), so an early PD says nothing about where they end. When either run's own
predictions moved by more than the budget (relative PD against their previous matched step)
since the last recording, or there is no earlier step to tell, the verdict is amber ("still
moving") rather than green. Grey without mates. Pure: the dashboard computes the readings
(app/store/read/replicas.py) and hands them in.

The default budget comes from healthy replicas: 24 pairs of the demo's digits MLP (shared
initialisation, different data order, 600 steps, 297 held-out digits; bench/pd_smelu.py) reach
relative PDs of mean 0.036 and 95th percentile 0.050; the default is 1.5 x that 95th percentile
(0.075) rounded up to a multiple of 0.05: 0.1. Their own predictions moved by at most 0.074
(relative PD) over their last 50 steps, so settled healthy replicas pass the "still moving" guard.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from trainlight.collectors.health.prediction_difference import Band, PairDifference
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict

DEFAULT_BUDGET = 0.1  # 1.5 x the healthy pairs' 95th percentile, see the module docstring


@dataclass(frozen=True)
class ReplicaReading:
    """A mate's PD with the run at their latest matched `step`, and `movement`: the larger of the
    two runs' relative PD against their own predictions at `previous` (their previous matched
    step; None and NaN movement when there is none)."""

    step: int
    difference: PairDifference
    previous: int | None
    movement: float


class ReproRule:
    """Judges a run's latest PD against each replica with the user's budget."""

    def __init__(self, budget: float = DEFAULT_BUDGET) -> None:
        if not (isinstance(budget, int | float) and math.isfinite(budget) and budget > 0):
            raise ValueError(f"repro budget must be a finite number > 0, got {budget!r}")
        self.budget = float(budget)

    def evaluate(self, latest: Mapping[str, ReplicaReading], step: int | None = None) -> Verdict:
        """`latest`: mate name → its reading with this run at their latest matched step."""
        if not latest:
            return Verdict(GREY, "no replicas with predictions in this run's group", step)
        bands = {m: r.difference.relative for m, r in latest.items()}
        above = {m: b for m, b in bands.items() if not b.low <= self.budget}
        if above:  # NaN PDs land here too: a replica predicting NaN is not reproducible
            mate, band = max(above.items(), key=lambda item: _key(item[1].low))
            reason = f"relative PD with {mate} {_band(band)} above budget {self.budget:g}"
            return Verdict(RED, reason, step)
        unsure = {m: b for m, b in bands.items() if not b.high <= self.budget}
        if unsure:
            mate, band = max(unsure.items(), key=lambda item: _key(item[1].high))
            reason = f"relative PD with {mate} {_band(band)} may exceed budget {self.budget:g}"
            return Verdict(AMBER, reason, step)
        moving = {m: r for m, r in latest.items() if not r.movement <= self.budget}
        if moving:
            return Verdict(AMBER, self._moving_reason(moving), step)
        worst = max(latest.items(), key=lambda item: item[1].difference.relative.value)
        diff = worst[1].difference
        reason = (
            f"relative PD at most {diff.relative.value:.3g} (with {worst[0]}: top-1 disagreement "
            f"{diff.disagreement.value:.3g}), {len(latest)} replica{'s' * (len(latest) > 1)}, "
            f"budget {self.budget:g}"
        )
        return Verdict(GREEN, reason, step)

    def _moving_reason(self, moving: Mapping[str, ReplicaReading]) -> str:
        mate, reading = max(moving.items(), key=lambda item: _key(item[1].movement))
        if reading.previous is None:
            return f"predictions still moving? one matched step with {mate} so far"
        return (
            f"predictions still moving: relative PD {reading.movement:.3g} between steps "
            f"{reading.previous} and {reading.step} (with {mate}), above budget {self.budget:g}"
        )


def _band(band: Band) -> str:
    return f"{band.value:.3g} (band {band.low:.3g}–{band.high:.3g})"


def _key(value: float) -> float:
    return math.inf if math.isnan(value) else value
