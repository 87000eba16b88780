"""`repro`: are replicas of one configuration predicting the same things, within a budget?

Judged from the latest matched-step prediction difference (PD, with its bootstrap band) between
a run and each of its replicas (other runs of its `group` that record `mon.predictions`). The
band decides, so a small probe set cannot turn the badge red on noise: green when every mate is
confidently within the budget (band top ≤ budget), red when some mate is confidently above it
(band bottom > budget), amber while the band straddles it. Grey without mates. Pure: the
dashboard computes the PDs (app/store/repro.py) and hands them in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from trainlight.collectors.health.prediction_difference import PairDifference
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Verdict


class ReproRule:
    """Judges a run's latest PD against each replica with the user's budget."""

    def __init__(self, budget: float = 0.1) -> None:
        if not (isinstance(budget, int | float) and math.isfinite(budget) and budget > 0):
            raise ValueError(f"repro budget must be a finite number > 0, got {budget!r}")
        self.budget = float(budget)

    def evaluate(self, latest: Mapping[str, PairDifference], step: int | None = None) -> Verdict:
        """`latest`: mate run id → its PD with this run at their latest matched step."""
        if not latest:
            return Verdict(GREY, "no replicas with predictions in this run's group", step)
        above = {m: d for m, d in latest.items() if not d.pd_low <= self.budget}
        if above:  # NaN PDs land here too: a replica predicting NaN is not reproducible
            mate, diff = max(above.items(), key=lambda item: _key(item[1].pd_low))
            return Verdict(RED, f"PD with {mate} {_band(diff)} above budget {self.budget:g}", step)
        unsure = {m: d for m, d in latest.items() if not d.pd_high <= self.budget}
        if unsure:
            mate, diff = max(unsure.items(), key=lambda item: _key(item[1].pd_high))
            return Verdict(
                AMBER, f"PD with {mate} {_band(diff)} may exceed budget {self.budget:g}", step
            )
        worst_pd = max(d.pd for d in latest.values())
        reason = f"PD at most {worst_pd:.3g} with {len(latest)} replicas, budget {self.budget:g}"
        return Verdict(GREEN, reason, step)


def _band(diff: PairDifference) -> str:
    return f"{diff.pd:.3g} (band {diff.pd_low:.3g}–{diff.pd_high:.3g})"


def _key(value: float) -> float:
    return math.inf if math.isnan(value) else value
