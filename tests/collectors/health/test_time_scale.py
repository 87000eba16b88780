"""The time-scale derivations of `catch`/`runaway`, against naive references."""

from __future__ import annotations

import json
import math

import pytest

from tests.support.segments import rows_table
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.rules.catch import CatchWindow
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.time_scale import (
    Levels,
    cadence,
    catch_patience,
    levelled_off,
    runaway_may_be_red,
    window_steps,
)
from trainlight.collectors.health.verdict import AMBER, GREY, Hysteresis, Verdict

DEFAULTS = HealthSettings()


def test_cadence_is_the_median_positive_gap() -> None:
    assert cadence([0, 10, 20, 30, 40]) == 10
    assert cadence([0, 5, 10, 100, 105]) == 5  # one late reading does not stretch it
    assert cadence([3, 3, 4, 5]) == 1  # repeated steps are not gaps
    assert cadence([7]) == 1 and cadence([]) == 1


def test_window_is_points_times_cadence_at_least_a_500th_of_the_length() -> None:
    assert window_steps(DEFAULTS, 1, None) == 20
    assert window_steps(DEFAULTS, 10, 1_000) == 200
    assert window_steps(DEFAULTS, 1, 100_000) == 200  # 1/500 of the declared length
    assert window_steps(DEFAULTS, 1, 100_001) == 201  # rounded up
    assert window_steps(HealthSettings(catch_window=500), 1, 900) == 500  # the override wins


def test_levelled_off_compares_the_latest_half_with_the_whole_drop() -> None:
    assert levelled_off(1.0, 0.55, 0.5, 0.1) is False  # the latest half brought 10% of 0.5
    assert levelled_off(1.0, 0.54, 0.5, 0.1) is True
    assert levelled_off(1.0, 1.2, 1.1, 0.1) is True  # never fell: nothing to wait for


def test_catch_patience_follows_the_levelled_off_step_within_bounds() -> None:
    assert catch_patience(DEFAULTS, 300, 20, None) == 600  # 2 x the levelled-off step
    assert catch_patience(DEFAULTS, 10, 20, None) == 40  # at least two windows
    assert catch_patience(DEFAULTS, 300, 20, 1_000) == 200  # at most 1/5 of the length
    assert catch_patience(HealthSettings(catch_patience=5_000), 300, 20, 900) == 5_000


def test_runaway_without_content_needs_readings_and_a_tenth_of_the_length() -> None:
    assert not runaway_may_be_red(DEFAULTS, 9, 500, 0, None)
    assert runaway_may_be_red(DEFAULTS, 10, 90, 0, None)
    assert not runaway_may_be_red(DEFAULTS, 50, 499, 0, 5_000)
    assert runaway_may_be_red(DEFAULTS, 50, 500, 0, 5_000)
    patient = HealthSettings(runaway_patience=100)
    assert not runaway_may_be_red(patient, 50, 150, 60, None)
    assert runaway_may_be_red(patient, 50, 160, 60, None)


def test_levels_thinned_keep_first_half_and_last_close_to_the_full_list() -> None:
    levels = Levels()
    values = [1.0 / (1 + i) for i in range(3_000)]
    for count, value in enumerate(values, start=1):
        levels.add(value)
        first, half, last = levels.first_half_last()
        assert first == values[0] and last == value
        exact = values[count // 2]
        assert abs(half - exact) <= abs(values[count // 2 - levels.stride] - exact) + 1e-12
    assert len(levels.values) <= 512 and levels.stride == 8


def naive_levelled_step(contents: list[tuple[int, float]], window: int, rho: float) -> int | None:
    """Reference: EMA per reading, its value at each window close, the first close that passes."""
    ema, closes, index = None, [], contents[0][0] // window
    for step, value in contents:
        if step // window > index:
            closes.append(((index + 1) * window - 1, ema))
            index = step // window
        ema = value if ema is None else 0.05 * value + 0.95 * ema
    for k in range(4, len(closes) + 1):
        values = [v for _, v in closes[:k]]
        drop = values[0] - values[-1]
        if not drop > 0 or values[k // 2] - values[-1] < rho * drop:
            return closes[k - 1][0]
    return None


@pytest.mark.parametrize(("every", "tau"), [(1, 60.0), (10, 600.0), (5, 3_000.0)])
def test_levelled_off_step_matches_the_naive_reference_and_scales_with_the_run(
    every: int, tau: float
) -> None:
    contents = [(s, 0.2 + math.exp(-s / tau)) for s in range(0, int(tau * 12), every)]
    window = CatchWindow(adversary="d_loss", content="content")
    for lo in range(0, len(contents), 37):  # segments of any size give the same answer
        chunk = contents[lo : lo + 37]
        rows = [(s, "d_loss", 0.5) for s, _ in chunk] + [(s, "content", v) for s, v in chunk]
        health = RunHealth(HealthSpec(roles={"adversary": "d_loss", "content": "content"}))
        health.judges["catch"].window = window
        health.feed(rows_table(rows))
    assert window.window == 20 * every
    expected = naive_levelled_step(contents, 20 * every, 0.1)
    assert window.plateau_since == expected
    # exp decay: the latest half brings < 10% of the drop at t = 4.4 tau (plus the EMA's lag)
    assert expected is not None and 4 * tau <= expected <= 6 * tau


def test_a_state_saved_before_derived_windows_still_loads_and_resumes() -> None:
    spec = HealthSpec(roles={"adversary": "d_loss", "content": "content"})
    health = RunHealth(spec)
    health.feed(rows_table([(s, "content", 1.0 / (1 + s)) for s in range(200)]))
    data = json.loads(health.to_json())
    for new in ("window", "planned", "pending", "content_steps", "levels"):
        del data["catch"][new]
    data["catch"]["prev_ema"] = 0.5  # a field the old rule had
    del data["runaway"]["seen"], data["runaway"]["planned"]
    for gate in data["hysteresis"].values():
        del gate["seen"]
    resumed = RunHealth.from_json(spec, json.dumps(data))
    assert resumed.window("catch").window == 500  # the old default
    resumed.feed(rows_table([(200, "content", 0.01)]))


def test_first_grey_verdict_with_a_reason_is_recorded_once() -> None:
    gate = Hysteresis(confirm=2)
    assert gate.update(Verdict(GREY, "no verdict yet: 0 of 2 baseline windows"))
    assert not gate.update(Verdict(GREY, "no verdict yet: 1 of 2 baseline windows"))
    assert gate.update(Verdict(AMBER, "no catch yet")) and gate.state == AMBER
    silent = Hysteresis(confirm=2)
    assert not silent.update(Verdict(GREY))  # no inputs, nothing to say


@pytest.mark.parametrize(
    ("overrides", "ok"),
    [
        ({"catch_window": None, "catch_patience": None, "runaway_patience": None}, True),
        ({"catch_window": 0}, False),
        ({"catch_patience_ratio": 0.0}, False),
        ({"catch_window_points": None}, False),
    ],
)
def test_derived_settings_accept_none_and_refuse_bad_overrides(
    overrides: dict[str, object], ok: bool
) -> None:
    if ok:
        assert HealthSettings.from_dict(overrides) == HealthSettings()
    else:
        with pytest.raises(ValueError, match="health setting"):
            HealthSettings.from_dict(overrides)
