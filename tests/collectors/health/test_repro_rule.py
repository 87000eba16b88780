"""The `repro` rule: the PD band against the budget decides green / amber / red; grey alone."""

from __future__ import annotations

import math

import pytest

from trainlight.collectors.health.prediction_difference import PairDifference
from trainlight.collectors.health.rules.repro import ReproRule
from trainlight.collectors.health.settings import HealthSettings


def diff(pd: float, low: float, high: float) -> PairDifference:
    return PairDifference(pd=pd, pd_low=low, pd_high=high, disagreement=0.01, examples=100)


def test_green_when_every_band_is_within_budget() -> None:
    verdict = ReproRule(0.1).evaluate({"a": diff(0.05, 0.04, 0.06), "b": diff(0.08, 0.07, 0.1)}, 40)
    assert verdict.state == "green"
    assert verdict.step == 40
    assert "0.08" in verdict.reason and "2 replicas" in verdict.reason


def test_amber_when_a_band_straddles_the_budget() -> None:
    verdict = ReproRule(0.1).evaluate({"a": diff(0.05, 0.04, 0.06), "b": diff(0.1, 0.09, 0.12)})
    assert verdict.state == "amber"
    assert "b" in verdict.reason and "0.12" in verdict.reason


def test_red_when_some_band_is_confidently_above() -> None:
    latest = {"a": diff(0.11, 0.095, 0.13), "b": diff(0.3, 0.25, 0.35)}
    verdict = ReproRule(0.1).evaluate(latest)
    assert verdict.state == "red"
    assert "PD with b 0.3" in verdict.reason


def test_nan_pd_is_red_not_green() -> None:
    verdict = ReproRule(0.1).evaluate({"a": diff(math.nan, math.nan, math.nan)})
    assert verdict.state == "red"


def test_grey_without_mates() -> None:
    assert ReproRule(0.1).evaluate({}).state == "grey"


@pytest.mark.parametrize("budget", [0.0, -1.0, math.nan, math.inf])
def test_bad_budget_is_refused(budget: float) -> None:
    with pytest.raises(ValueError, match="repro budget"):
        ReproRule(budget)


def test_budget_setting_defaults_and_is_validated() -> None:
    assert HealthSettings().repro_budget == 0.1
    assert HealthSettings.from_dict({"repro_budget": 0.2}).repro_budget == 0.2
    with pytest.raises(ValueError, match="repro_budget"):
        HealthSettings(repro_budget=0.0)
