from __future__ import annotations

import pytest

from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED, Hysteresis, Verdict


def test_first_verdict_is_taken_at_once_then_changes_need_confirmation() -> None:
    gate = Hysteresis(confirm=2)
    assert gate.update(Verdict(GREEN)) and gate.state == GREEN
    assert not gate.update(Verdict(AMBER)) and gate.state == GREEN  # one amber: a flicker
    assert not gate.update(Verdict(GREEN))
    assert not gate.update(Verdict(AMBER))
    assert gate.update(Verdict(AMBER)) and gate.state == AMBER  # two in a row: real


def test_sticky_verdicts_apply_at_once_and_never_change() -> None:
    gate = Hysteresis(confirm=3)
    gate.update(Verdict(GREEN))
    assert gate.update(Verdict(RED, sticky=True)) and gate.state == RED
    for _ in range(5):
        assert not gate.update(Verdict(GREEN))
    assert gate.state == RED


def test_grey_verdicts_do_not_leave_grey() -> None:
    gate = Hysteresis(confirm=2)
    assert not gate.update(Verdict(GREY)) and gate.state == GREY


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"confirm": 0}, "confirm must be an integer >= 1, got 0"),
        ({"dead_red": 1.5}, "dead_red must be in \\(0, 1\\], got 1.5"),
        ({"catch_gamma": -1.0}, "catch_gamma must be > 0, got -1.0"),
        ({"dead_amber": 0.6, "dead_red": 0.5}, "must not exceed"),
        ({"no_such": 1}, "unknown health settings \\['no_such'\\]"),
    ],
)
def test_bad_settings_are_refused_with_the_value_named(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        HealthSettings.from_dict(overrides)
