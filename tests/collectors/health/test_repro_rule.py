"""The `repro` rule: the relative PD band against the budget decides red / amber, settled
predictions are needed for green, grey alone."""

from __future__ import annotations

import math

import pytest

from trainlight.collectors.health.prediction_difference import Band, PairDifference
from trainlight.collectors.health.rules.repro import DEFAULT_BUDGET, ReplicaReading, ReproRule
from trainlight.collectors.health.settings import HealthSettings


def reading(
    pd: float, low: float, high: float, movement: float = 0.01, previous: int | None = 30
) -> ReplicaReading:
    other = Band(9.0, 9.0, 9.0)  # absolute PD and disagreement never decide
    diff = PairDifference(other, Band(pd, low, high), Band(0.02, 0.01, 0.03), 100, True)
    return ReplicaReading(40, diff, previous, movement)


def test_green_when_every_band_is_within_budget_and_predictions_settled() -> None:
    latest = {"a": reading(0.05, 0.04, 0.06), "b": reading(0.08, 0.07, 0.1)}
    verdict = ReproRule(0.1).evaluate(latest, 40)
    assert verdict.state == "green"
    assert verdict.step == 40
    assert "at most 0.08" in verdict.reason and "2 replicas" in verdict.reason
    assert "top-1 disagreement 0.02" in verdict.reason


def test_amber_when_a_band_straddles_the_budget() -> None:
    latest = {"a": reading(0.05, 0.04, 0.06), "b": reading(0.1, 0.09, 0.12)}
    verdict = ReproRule(0.1).evaluate(latest)
    assert verdict.state == "amber"
    assert "b" in verdict.reason and "0.12" in verdict.reason


def test_red_when_some_band_is_confidently_above() -> None:
    latest = {"a": reading(0.11, 0.095, 0.13), "b": reading(0.3, 0.25, 0.35)}
    verdict = ReproRule(0.1).evaluate(latest)
    assert verdict.state == "red"
    assert "relative PD with b 0.3" in verdict.reason


def test_red_stands_while_predictions_still_move() -> None:
    verdict = ReproRule(0.1).evaluate({"a": reading(0.3, 0.25, 0.35, movement=0.5)})
    assert verdict.state == "red"


def test_amber_while_predictions_still_move_more_than_the_budget() -> None:
    verdict = ReproRule(0.1).evaluate({"a": reading(0.0, 0.0, 0.0, movement=0.4)})
    assert verdict.state == "amber"
    assert "still moving: relative PD 0.4 between steps 30 and 40" in verdict.reason


def test_amber_with_a_single_matched_step() -> None:
    """Replicas sharing their initialisation are identical at step 0: PD 0 proves nothing."""
    single = reading(0.0, 0.0, 0.0, movement=math.nan, previous=None)
    verdict = ReproRule(0.1).evaluate({"a": single})
    assert verdict.state == "amber" and "one matched step" in verdict.reason


def test_nan_pd_is_red_not_green() -> None:
    verdict = ReproRule(0.1).evaluate({"a": reading(math.nan, math.nan, math.nan)})
    assert verdict.state == "red"


def test_grey_without_mates() -> None:
    assert ReproRule(0.1).evaluate({}).state == "grey"


@pytest.mark.parametrize("budget", [0.0, -1.0, math.nan, math.inf])
def test_bad_budget_is_refused(budget: float) -> None:
    with pytest.raises(ValueError, match="repro budget"):
        ReproRule(budget)


def test_budget_setting_defaults_to_the_derived_budget_and_is_validated() -> None:
    assert HealthSettings().repro_budget == DEFAULT_BUDGET == ReproRule().budget
    assert HealthSettings.from_dict({"repro_budget": 0.2}).repro_budget == 0.2
    with pytest.raises(ValueError, match="repro_budget"):
        HealthSettings(repro_budget=0.0)
