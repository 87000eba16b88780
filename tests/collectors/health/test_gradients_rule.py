"""`gradients`: the rule against a plain loop, any segmentation giving the same verdicts, and the
runs that must (and must never) turn red."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest

from tests.support.segments import rows_table
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED

SETTINGS = HealthSettings()
LAYERS = ("embed", "block.0", "block.1", "head")
SIZES = {"embed": 4096, "block.0": 16384, "block.1": 16384, "head": 640}  # parameters
EVERY = 10


def run(
    rng: np.random.Generator,
    readings: int = 60,
    *,
    scale: dict[str, float] | None = None,
    trouble: tuple[int, str, float] | None = None,
    loss_fall: float = 0.5,
    ratio: float = 1e-3,
) -> tuple[list[tuple[int, str, float]], list[tuple[int, str, str, float]]]:
    """(loss rows every step, gradient rows every EVERY steps): every layer's norm falls as the
    loss does, with noise; from reading `trouble[0]` on, layer `trouble[1]` is multiplied by
    `trouble[2]`. `loss_fall`: how much the loss falls over the run (0: a plateau)."""
    scale = scale or {}
    metrics, layers = [], []
    for step in range(readings * EVERY):
        progress = step / (readings * EVERY)
        metrics.append((step, "loss", (2.0 - 2.0 * loss_fall * progress) * rng.lognormal(0, 0.02)))
        if step % EVERY:
            continue
        n = step // EVERY
        for layer in LAYERS:
            g = scale.get(layer, 1.0) * (1.0 - 0.9 * progress) * rng.lognormal(0, 0.3)
            r = ratio * rng.lognormal(0, 0.3)
            if trouble is not None and n >= trouble[0] and layer == trouble[1]:
                g *= trouble[2]
                r *= trouble[2] if trouble[2] > 1 else 1.0
            layers += [
                (step, layer, "grad_norm", g * math.sqrt(SIZES[layer] / 4096)),
                (step, layer, "param_count", float(SIZES[layer])),
                (step, layer, "update_ratio", r),
            ]
    return metrics, layers


def naive_states(metrics, layers, s: HealthSettings) -> list[str]:  # type: ignore[no-untyped-def]
    """The rule as a plain loop over whole histories."""
    steps = sorted({step for step, *_ in layers})
    states, out, since, broken = [], 0, None, False
    for n, step in enumerate(steps):
        grads = {lay: v for st, lay, k, v in layers if st == step and k == "grad_norm"}
        sizes = {lay: v for st, lay, k, v in layers if st <= step and k == "param_count"}
        rms = {lay: g / math.sqrt(sizes[lay]) for lay, g in grads.items() if math.isfinite(g)}
        ratios = {lay: v for st, lay, k, v in layers if st == step and k == "update_ratio"}
        early = {}
        for layer in grads:
            before = [
                v
                for st, lay, k, v in layers
                if lay == layer and k == "grad_norm" and st < step and math.isfinite(v) and v > 0
            ][: s.gradients_baseline]
            if len(before) == s.gradients_baseline:
                early[layer] = statistics.median(before)
        losses = [v for st, _, v in metrics if st <= step][-20:]
        level = statistics.median(losses) if losses else None
        exploding = {
            lay for lay, g in grads.items() if lay in early and g > s.gradients_explode * early[lay]
        }
        calm = {lay: v for lay, v in rms.items() if lay not in exploding}
        largest = max(calm.values(), default=0.0)
        bad = (
            any(not math.isfinite(g) for g in grads.values())
            or bool(exploding)
            or any(largest > 0 and v < s.gradients_vanish * largest for v in calm.values())
        )
        bad = bad or any(r > s.gradients_ratio_high for r in ratios.values())
        broken = broken or any(not math.isfinite(g) for g in grads.values())
        if not bad:
            out, since = 0, None
        else:
            since = (step, level) if out == 0 else since
            out += 1
        learning = (
            since is not None
            and since[1] is not None
            and level is not None
            and level < since[1] - s.gradients_progress * abs(since[1])
        )
        lasted = since is not None and step - since[0] >= s.gradients_patience and out >= 3
        if broken:
            states.append(RED)
        elif n + 1 < s.gradients_baseline:
            states.append(GREY)
        elif out == 0:
            states.append(GREEN)
        else:
            states.append(RED if lasted and not learning else AMBER)
    return states


def window_states(metrics, layers, s: HealthSettings = SETTINGS) -> list[str]:  # type: ignore[no-untyped-def]
    health = RunHealth(HealthSpec(settings=s))
    states = []
    steps = sorted({step for step, *_ in layers})
    for low, high in itertools.pairwise([-1, *steps]):
        table = rows_table(
            [m for m in metrics if low < m[0] <= high], [r for r in layers if low < r[0] <= high]
        )
        health.feed(table, final=True)
        states.append(health.window("gradients").state(s))
    return states


@pytest.mark.parametrize("seed", range(6))
def test_the_window_matches_the_plain_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer = LAYERS[seed % len(LAYERS)]
    factor = [1e3, 1e-6, 0.0, 200.0, 1e-3, 5e2][seed]
    metrics, layers = run(rng, trouble=(int(rng.integers(5, 40)), layer, factor), loss_fall=0.1)
    if seed == 5:
        layers[200] = (layers[200][0], layers[200][1], "grad_norm", math.nan)
    settings = HealthSettings(gradients_patience=int(rng.integers(10, 150)))
    assert window_states(metrics, layers, settings) == naive_states(metrics, layers, settings)


def changes(metrics, layers, cuts: list[int], s: HealthSettings = SETTINGS) -> list[tuple]:  # type: ignore[no-untyped-def]
    health = RunHealth(HealthSpec(settings=s))
    found = []
    last = max(m[0] for m in metrics)
    for low, high in itertools.pairwise([-1, *cuts, last]):
        table = rows_table(
            [m for m in metrics if low < m[0] <= high], [r for r in layers if low < r[0] <= high]
        )
        result = health.feed(table, final=high == last)
        found += [
            (t.state, t.step, t.reason) for t in result.transitions if t.signal == "gradients"
        ]
    return found


def test_any_segmentation_gives_the_same_changes() -> None:
    metrics, layers = run(np.random.default_rng(1), trouble=(20, "block.0", 0.0), loss_fall=0.0)
    whole = changes(metrics, layers, [])
    assert [state for state, _, _ in whole] == [GREY, GREEN, AMBER, RED]
    assert "'block.0'" in whole[-1][2] and "vanish" not in whole[-1][2]
    for cuts in ([7], [199, 200, 201], sorted(np.random.default_rng(2).choice(599, 25).tolist())):
        assert changes(metrics, layers, [int(c) for c in cuts]) == whole


def test_a_converging_run_whose_gradients_all_fall_stays_green() -> None:
    metrics, layers = run(np.random.default_rng(3), readings=80)
    assert {state for state, _, _ in changes(metrics, layers, [])} == {GREY, GREEN}


def test_a_run_that_starts_with_huge_gradients_is_judged_against_its_own_start() -> None:
    metrics, layers = run(np.random.default_rng(4), scale={"embed": 5.0, "head": 0.5})
    huge_then_calm = [
        (st, lay, k, v * (1 + 1e3 * math.exp(-st / 30)) if k == "grad_norm" else v)
        for st, lay, k, v in layers
    ]
    assert {state for state, _, _ in changes(metrics, huge_then_calm, [])} == {GREY, GREEN}


def test_a_layer_that_stops_learning_while_the_loss_still_falls_stays_amber() -> None:
    metrics, layers = run(np.random.default_rng(5), trouble=(10, "embed", 1e-6), loss_fall=0.6)
    assert [state for state, _, _ in changes(metrics, layers, [])][-1] == AMBER


def test_exploding_and_too_large_updates_turn_red_when_the_loss_stalls() -> None:
    metrics, layers = run(np.random.default_rng(6), trouble=(20, "head", 1e3), loss_fall=0.0)
    found = changes(metrics, layers, [])
    assert found[-1][0] == RED and "early level" in found[-1][2]
    assert "moves" in found[-1][2] or "more" in found[-1][2]


def test_a_non_finite_gradient_is_red_for_good() -> None:
    metrics, layers = run(np.random.default_rng(7))
    layers = [
        (st, lay, k, math.inf if (st == 300 and lay == "head" and k == "grad_norm") else v)
        for st, lay, k, v in layers
    ]
    found = changes(metrics, layers, [150])
    assert found[-1][:2] == (RED, 300) and "non-finite gradient in layer 'head'" in found[-1][2]


def test_a_run_resumed_from_its_saved_state_judges_as_if_never_saved() -> None:
    metrics, layers = run(np.random.default_rng(8), trouble=(20, "head", 1e-7), loss_fall=0.0)
    straight, resumed = RunHealth(HealthSpec()), RunHealth(HealthSpec())
    for i, low in enumerate(range(-1, 600, 47)):
        part = rows_table(
            [m for m in metrics if low < m[0] <= low + 47],
            [r for r in layers if low < r[0] <= low + 47],
        )
        if i == 5:
            resumed = RunHealth.from_json(HealthSpec(), resumed.to_json())
        assert resumed.feed(part) == straight.feed(part)
    assert resumed.to_json() == straight.to_json()
