"""`spike`: the rule against a plain loop, any segmentation giving the same verdicts, the
scenarios that must (and must never) turn red, and real char-level LM trainings."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from tests.support.segments import rows_table
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.rules.spike import SpikeWindow
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED

SETTINGS = HealthSettings()


def naive_states(values: list[float], s: HealthSettings) -> list[str]:
    """The rule as a plain loop: the whole history re-read at every reading."""
    history: list[float] = []
    onsets: list[int] = []
    spike: list[float] | None = None  # [level, ceiling, readings open]
    recovered_at: int | None = None
    diverged = False
    start: float | None = None  # the median of the first min_history readings
    states = []
    for n, value in enumerate(values, start=1):
        if not diverged and not math.isnan(value):
            if spike is not None:
                if value <= spike[0] + (spike[1] - spike[0]) / 4:
                    spike, recovered_at = None, n
                    history = [*history, value][-s.loss_spike_window :]
                else:
                    spike[2] += 1
                    diverged = spike[2] >= s.loss_spike_patience
            else:
                ceiling = math.inf
                if len(history) >= s.loss_spike_min_history:
                    level = statistics.median(history)
                    if start is None:
                        start = level
                    mad = statistics.median([abs(x - level) for x in history])
                    ceiling = max(
                        level + s.loss_spike_k * 1.4826 * mad,
                        level + s.loss_spike_rtol * abs(level),
                        level + s.loss_spike_floor * abs(start),
                    )
                if value > ceiling:
                    spike = [level, ceiling, 0]
                    onsets.append(n)
                else:
                    history = [*history, value][-s.loss_spike_window :]
        recent = [o for o in onsets if o > n - s.loss_spike_window]
        if diverged or len(recent) >= s.loss_spike_repeat:
            states.append(RED)
        elif spike is not None or (
            recovered_at is not None and n - recovered_at < s.loss_spike_window
        ):
            states.append(AMBER)
        else:
            states.append(GREEN if len(history) >= s.loss_spike_min_history else GREY)
    return states


def noisy_loss(rng: np.random.Generator, steps: int) -> list[float]:
    """A falling training loss with multiplicative noise, like a minibatch loss."""
    t = np.arange(steps)
    return list(map(float, (0.5 + 3.0 * np.exp(-t / 80)) * rng.lognormal(0.0, 0.05, steps)))


def window_states(values: list[float], s: HealthSettings = SETTINGS) -> list[str]:
    window = SpikeWindow()
    out = []
    for step, value in enumerate(values):
        window.take(step, value, s)
        out.append(window.state(s))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_the_window_matches_the_plain_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = noisy_loss(rng, 600)
    for at in rng.choice(np.arange(40, 580), size=6, replace=False):  # spikes of any length
        length = int(rng.integers(1, 30 if seed % 2 else 130))
        values[at : at + length] = [v * float(rng.uniform(2, 6)) for v in values[at : at + length]]
    values[int(rng.integers(0, 600))] = math.nan
    settings = HealthSettings(loss_spike_window=int(rng.integers(20, 80)), loss_spike_patience=60)
    assert window_states(values, settings) == naive_states(values, settings)


def changes(values: list[float], cuts: list[int], s: HealthSettings = SETTINGS) -> list[tuple]:
    health = RunHealth(HealthSpec(settings=s))
    found = []
    bounds = [0, *cuts, len(values)]
    for low, high in itertools.pairwise(bounds):
        table = rows_table([(i, "loss", v) for i, v in enumerate(values[low:high], start=low)])
        result = health.feed(table, final=high == len(values))
        found += [(t.state, t.step, t.reason) for t in result.transitions if t.signal == "spike"]
    return found


def test_any_segmentation_gives_the_same_changes() -> None:
    rng = np.random.default_rng(3)
    values = noisy_loss(rng, 500)
    values[200:205] = [v * 4 for v in values[200:205]]
    whole = changes(values, [])
    assert [state for state, _, _ in whole] == [GREY, GREEN, AMBER, GREEN]
    for cuts in ([1], [199, 200, 201, 204], sorted(rng.choice(499, 40, replace=False).tolist())):
        assert changes(values, [int(c) for c in cuts]) == whole


def test_a_spike_that_recovers_is_amber_then_green_never_red() -> None:
    values = noisy_loss(np.random.default_rng(1), 400)
    values[150:158] = [v * 8 for v in values[150:158]]
    found = changes(values, [100, 300])
    assert [state for state, _, _ in found] == [GREY, GREEN, AMBER, GREEN]
    amber = found[2]
    assert amber[1] == 151 and "at step 150" in amber[2]  # confirmed at the second reading


def test_a_loss_that_never_comes_back_is_red_for_good() -> None:
    values = noisy_loss(np.random.default_rng(2), 400)
    values[150:] = [v * 10 for v in values[150:]]
    found = changes(values, [120, 250])
    assert found[-1][0] == RED and found[-1][1] == 150 + SETTINGS.loss_spike_patience
    assert "diverged" in found[-1][2] and "step 150" in found[-1][2]


def test_spikes_repeating_within_the_window_turn_red() -> None:
    values = noisy_loss(np.random.default_rng(4), 300)
    for at in (100, 115, 130):
        values[at] *= 6
    assert RED in [state for state, _, _ in changes(values, [])]
    spaced = noisy_loss(np.random.default_rng(4), 300)
    for at in (60, 140, 220):  # three spikes, each more than a window from the last
        spaced[at] *= 6
    assert RED not in [state for state, _, _ in changes(spaced, [])]


def test_single_batch_blips_of_a_loss_converged_near_zero_are_never_red() -> None:
    """A classifier at 0.01 whose batches with a mistake read 0.15-0.35 (cnn-sgd-s12 of
    bench/heldout_batch.py): ten times its level, but a tenth of its starting loss."""
    rng = np.random.default_rng(5)
    values = [2.3 * math.exp(-t / 60) + 0.01 for t in range(600)]
    for at in range(300, 600, 15):
        values[at] = float(rng.uniform(0.15, 0.35))
    assert RED not in window_states(values)
    assert RED in window_states(values, HealthSettings(loss_spike_floor=0.01))


def test_a_fast_falling_loss_and_its_noise_never_spike() -> None:
    for seed in range(5):
        values = noisy_loss(np.random.default_rng(seed), 800)
        assert {s for s, _, _ in changes(values, [300])} == {GREY, GREEN}


@pytest.mark.slow
def test_real_char_lm_sane_schedule_is_never_red_and_an_overshooting_one_is_red(
    tmp_path: Path,
) -> None:
    from tests.support.char_lm import train_char_lm
    from tests.support.health_replay import judged_states

    sane = train_char_lm(tmp_path / "sane", "lm-sane", lr=1e-3, steps=220)
    wild = train_char_lm(tmp_path / "wild", "lm-wild", lr=1e-3, steps=220, overshoot_at=100)
    # Labels from final quality only: the held-out loss against the unigram baseline.
    assert sane.final_loss < 0.85 * sane.unigram_loss
    assert not wild.final_loss < 0.85 * wild.unigram_loss
    assert RED not in judged_states(tmp_path / "sane", "spike")
    assert RED in judged_states(tmp_path / "wild", "spike")


def test_a_run_resumed_from_its_saved_state_mid_spike_judges_as_if_never_saved() -> None:
    values = noisy_loss(np.random.default_rng(5), 400)
    values[150:170] = [v * 5 for v in values[150:170]]
    tables = [
        rows_table([(i, "loss", v) for i, v in enumerate(values[low : low + 40], start=low)])
        for low in range(0, 400, 40)
    ]
    straight, resumed = RunHealth(HealthSpec()), RunHealth(HealthSpec())
    for i, table in enumerate(tables):
        if i == 4:  # steps 160..199: inside the spike
            resumed = RunHealth.from_json(HealthSpec(), resumed.to_json())
        assert resumed.feed(table) == straight.feed(table)
    assert resumed.to_json() == straight.to_json()
