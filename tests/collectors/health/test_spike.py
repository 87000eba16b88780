"""`spike`: the rule against a plain loop, any segmentation giving the same verdicts, the
scenarios that must (and must never) turn red, and real char-level LM trainings."""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.support.segments import rows_table
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.rules.spike import SpikeRule, SpikeWindow
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED

SETTINGS = HealthSettings()


Gradients = Mapping[int, Mapping[str, float]]  # step -> layer -> gradient norm (watch's rows)
NO_GRADIENTS: Gradients = {}


def naive_states(
    values: list[float], s: HealthSettings, grads: Gradients = NO_GRADIENTS
) -> list[str]:
    """The rule as a plain loop: the whole history re-read at every reading. `grads`: the
    gradient readings, each taken before the loss of its step (steps are reading indices)."""
    outside: dict[str, list[float]] = {}  # every gradient reading outside spikes, per layer
    during: list[float] = []  # per reading in the open spike: median of norm / level before
    spike_values: list[float] = []  # the open spike's readings
    mark: float | None = None  # their recent median at the last relearning check
    history: list[float] = []
    onsets: list[int] = []
    spike: list[float] | None = None  # [level, ceiling, readings open]
    recovered_at: int | None = None
    diverged = False
    start: float | None = None  # the median of the first min_history readings
    states = []
    for n, value in enumerate(values, start=1):
        reading = grads.get(n - 1, {})
        if spike is None:
            for layer, norm in reading.items():
                outside.setdefault(layer, []).append(norm)
        elif reading:
            levels = {layer: statistics.median(outside[layer][-5:]) for layer in reading}
            during.append(statistics.median(reading[k] / levels[k] for k in reading))
        if not diverged and not math.isnan(value):
            if spike is not None:
                if value <= spike[0] + (spike[1] - spike[0]) / 4:
                    spike, recovered_at = None, n
                    history = [*history, value][-s.loss_spike_window :]
                else:
                    spike[2] += 1
                    spike_values.append(value)
                    band = (s.loss_spike_relearning, 1 / s.loss_spike_relearning)
                    relearning = bool(during) and (
                        band[0] <= statistics.median(during[-3:]) <= band[1]
                    )
                    past = spike[2] - s.loss_spike_patience
                    if past >= 0 and relearning and past % s.loss_spike_relearn_every == 0:
                        now = statistics.median(spike_values[-s.loss_spike_window :])
                        relearning = mark is None or now <= mark - 0.01 * abs(mark)
                        mark = now
                    diverged = past >= 0 and not relearning
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
                    spike, during, spike_values, mark = [level, ceiling, 0], [], [value], None
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


def window_states(
    values: list[float], s: HealthSettings = SETTINGS, grads: Gradients = NO_GRADIENTS
) -> list[str]:
    window = SpikeWindow()
    out = []
    for step, value in enumerate(values):
        if step in grads:
            window.take_gradients(grads[step])
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
    # One long spike past its patience whose loss stays up or slowly falls: relearning checks.
    at, length, fall = int(rng.integers(100, 250)), int(rng.integers(150, 300)), rng.uniform(0, 0.5)
    peak = 4 * values[at]
    for i in range(at, min(at + length, 600)):
        values[i] = peak * (1 - fall * (i - at) / length) * float(rng.lognormal(0, 0.05))
    values[int(rng.integers(0, 600))] = math.nan
    settings = HealthSettings(
        loss_spike_window=int(rng.integers(20, 80)),
        loss_spike_patience=60,
        loss_spike_relearn_every=int(rng.integers(10, 40)),  # checks within these spikes
    )
    assert window_states(values, settings) == naive_states(values, settings)
    grads = random_gradients(rng, len(values))
    with_grads = window_states(values, settings, grads)
    assert with_grads == naive_states(values, settings, grads)


def random_gradients(rng: np.random.Generator, steps: int) -> dict[int, dict[str, float]]:
    """Three layers' gradient norms every 7th step, in stretches at their level, a bit under
    it, collapsed or exploding: spikes past their patience both relearn and diverge."""
    scales = [1.0, 0.5, 0.3, 0.2, 1e-3, 3.0, 8.0]
    out = {}
    for step in range(0, steps, 7):
        scale = scales[(step // 70 + int(rng.integers(0, 2))) % len(scales)]
        out[step] = {f"l{i}": float(10**i * scale * rng.lognormal(0, 0.3)) for i in range(3)}
    return out


def loss_table(
    values: list[float], low: int, high: int, grads: Gradients = NO_GRADIENTS
) -> pa.Table:
    """Steps low..high-1 as one segment's rows: the loss and any gradient norms."""
    metrics = [(i, "loss", v) for i, v in enumerate(values[low:high], start=low)]
    layers = [
        (step, layer, "grad_norm", norm)
        for step in range(low, high)
        for layer, norm in grads.get(step, {}).items()
    ]
    return rows_table(metrics, layers)


def changes(
    values: list[float],
    cuts: list[int],
    s: HealthSettings = SETTINGS,
    grads: Gradients = NO_GRADIENTS,
) -> list[tuple]:
    health = RunHealth(HealthSpec(settings=s))
    found = []
    bounds = [0, *cuts, len(values)]
    for low, high in itertools.pairwise(bounds):
        table = loss_table(values, low, high, grads)
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


def knocked_back(scale: Callable[[int], float]) -> tuple[list[float], dict]:
    """A loss knocked up 3x at step 150 that comes back at step 400 (a learning-rate burst undid
    what the run had learned, and it relearns), and four layers' gradient norms every 10 steps,
    at `scale(step)` times their own level."""
    rng = np.random.default_rng(7)
    values = noisy_loss(rng, 600)
    values[150:400] = [v * 3 for v in values[150:400]]
    grads = {
        step: {f"l{i}": float(10**-i * scale(step) * rng.lognormal(0, 0.2)) for i in range(4)}
        for step in range(0, 600, 10)
    }
    return values, grads


def test_past_its_patience_a_spike_relearning_with_live_gradients_stays_amber() -> None:
    values, grads = knocked_back(lambda step: 0.6 if 150 <= step < 400 else 1.0)
    found = changes(values, [155, 230], grads=grads)
    assert [state for state, _, _ in found] == [GREY, GREEN, AMBER, GREEN]
    assert RED in [state for state, _, _ in changes(values, [155, 230])]  # the loss alone
    window = SpikeWindow()
    for step, value in enumerate(values[:260]):
        if step in grads:
            window.take_gradients(grads[step])
        window.take(step, value, SETTINGS)
    reason = SpikeRule(SETTINGS).evaluate(window, 259).reason
    assert re.search(r"not back yet, but relearning: the layers' gradients are 0\.\d+x", reason)


def test_a_spike_whose_gradients_collapse_or_explode_diverges_then_or_at_its_patience() -> None:
    collapse_at_300 = knocked_back(lambda step: 1.0 if step < 150 else 0.6 if step < 300 else 1e-3)
    found = changes(*collapse_at_300[:1], [200], grads=collapse_at_300[1])
    assert found[-1][:2] == (RED, 310)  # the median of its last 3 readings (290, 300, 310)
    assert "diverged" in found[-1][2]
    patience = 150 + SETTINGS.loss_spike_patience
    for scale in (1e-2, 10.0):  # far under or far over their level: not relearning
        values, grads = knocked_back(lambda step, x=scale: x if step >= 150 else 1.0)
        assert changes(values, [], grads=grads)[-1][:2] == (RED, patience)


def test_a_spike_with_live_gradients_whose_loss_stays_up_diverges_at_a_relearning_check() -> None:
    values, grads = knocked_back(lambda step: 1.0 if step < 150 else 0.6)
    noise = np.random.default_rng(8).lognormal(0.0, 0.05, 450)
    flat = values[:150] + [2.5 * float(x) for x in noise]  # up from ~0.95, for good
    check = 150 + SETTINGS.loss_spike_patience + SETTINGS.loss_spike_relearn_every
    found = changes(flat, [300], grads=grads)
    assert found[-1][:2] == (RED, check) and "diverged" in found[-1][2]
    falling = flat[:200] + [v * (1 - 0.1 * (i / 200)) for i, v in enumerate(flat[200:])]
    assert RED not in [state for state, _, _ in changes(falling, [300], grads=grads)]


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
    values, grads = knocked_back(lambda step: 1.0 if step < 150 else 0.6 if step < 300 else 1e-3)
    tables = [loss_table(values, low, low + 40, grads) for low in range(0, 600, 40)]
    straight, resumed = RunHealth(HealthSpec()), RunHealth(HealthSpec())
    for i, table in enumerate(tables):
        if i in (4, 6):  # steps 160..199 and 240..279: inside the spike, before and past patience
            resumed = RunHealth.from_json(HealthSpec(), resumed.to_json())
        assert resumed.feed(table) == straight.feed(table)
    assert resumed.to_json() == straight.to_json()
