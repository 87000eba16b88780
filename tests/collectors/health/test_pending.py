"""The watermark (`Pending`), the block-wise runaway judgement and `Hysteresis.run`, each against
a naive reference: the whole stream at once, and the rule judged reading by reading."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from tests.support.segments import rows_table
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.observations import SegmentRows, extract
from trainlight.collectors.health.pending import Pending
from trainlight.collectors.health.rules import runaway_block
from trainlight.collectors.health.rules.runaway import RunawayRule, RunawayWindow
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import Hysteresis

KEYS = {"loss", "runaway/distance"}


def rows(metrics: list[tuple[int, str, float]], layers: list | None = None) -> SegmentRows:
    return extract(rows_table(metrics, layers or []), KEYS)


def test_the_highest_step_waits_until_a_later_step_or_the_end_of_the_run() -> None:
    pending = Pending()
    first = pending.take(rows([(0, "loss", 1.0), (1, "loss", 0.9)]))
    assert first.metrics == {"loss": ([0], [1.0])} and first.first_step == 0
    second = pending.take(rows([(1, "runaway/distance", 0.3)]))  # still step 1: held
    assert second.metrics == {} and second.first_step is None
    third = pending.take(rows([(2, "loss", 0.8)]))
    assert third.metrics == {"loss": ([1], [0.9]), "runaway/distance": ([1], [0.3])}
    last = pending.take(rows([]), final=True)
    assert last.metrics == {"loss": ([2], [0.8])} and last.last_step == 2


def test_nonfinite_and_layer_rows_wait_with_their_step() -> None:
    pending = Pending()
    held = pending.take(rows([(0, "loss", 1.0), (1, "loss", math.nan)], [(1, "fc", "undead", 4)]))
    assert held.nonfinite is None and held.layers == {}
    out = pending.take(rows([(2, "loss", 0.5)]))
    assert out.nonfinite is not None and out.nonfinite.step == 1
    assert out.layers == {"undead": {"fc": ([1], [4.0])}}


def test_a_late_row_is_released_with_the_next_segment() -> None:
    pending = Pending()
    pending.take(rows([(5, "loss", 1.0), (6, "loss", 1.0)]))
    out = pending.take(rows([(3, "loss", 7.0)]))  # step 3 was released already
    assert out.metrics == {"loss": ([3], [7.0])}
    assert pending.step == 6 and pending.metrics == {"loss": [1.0]}


def stream(rng: np.random.Generator, steps: int) -> list[tuple[int, str, float]]:
    out = []
    for step in range(steps):
        for key in rng.permutation(["loss", "runaway/distance", "other"])[: rng.integers(1, 4)]:
            out.append((step, str(key), float(rng.normal())))
    return out


@pytest.mark.parametrize("seed", range(10))
def test_any_cut_releases_every_row_once_in_step_order_and_only_complete_steps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = stream(rng, 60)
    bounds = sorted(rng.choice(len(data), size=12, replace=False).tolist())
    pending, got = Pending(), {k: ([], []) for k in ("loss", "runaway/distance")}
    for i, (start, end) in enumerate(zip([0, *bounds], [*bounds, len(data)], strict=True)):
        if i % 4 == 3:  # a restart: the held rows go through JSON
            pending = Pending.from_dict(json.loads(json.dumps(pending.to_dict())))
        seen_max = max(s for s, _, _ in data[:end]) if end else -1
        out = pending.take(rows(data[start:end]), final=end == len(data))
        for key, (steps, values) in out.metrics.items():
            assert end == len(data) or max(steps) < seen_max  # only complete steps
            got[key][0].extend(steps)
            got[key][1].extend(values)
    for key, (steps, values) in got.items():
        expected = [(s, v) for s, k, v in data if k == key]
        assert list(zip(steps, values, strict=True)) == expected


def readings(rng: np.random.Generator, n: int, start: int) -> list[tuple[int, str, float]]:
    out: list[tuple[int, str, float]] = []
    level = rng.uniform(0.0, 0.6)
    for i in range(n):
        step = start + 3 * i
        level = max(0.0, level + rng.normal(0, 0.08))
        distance = math.nan if rng.random() < 0.03 else level
        out += [
            (step, "runaway/distance", distance),
            (step, "runaway/critical", 0.2),
            (step, "runaway/effect", float(rng.uniform(0.0, 1.5))),
        ]
    return out


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("content_role", [False, True])
def test_runaway_block_equals_the_rule_judged_reading_by_reading(
    seed: int, content_role: bool
) -> None:
    rng = np.random.default_rng(seed)
    settings = HealthSettings(runaway_patience=20, runaway_trend_points=4)
    block_window = RunawayWindow(has_content_role=content_role)
    naive_window = RunawayWindow(has_content_role=content_role)
    rule, start = RunawayRule(settings), 0
    for part in range(6):
        flat = 120 if content_role and part >= 3 else None
        block_window.content_flat_since = naive_window.content_flat_since = flat
        n = int(rng.integers(1, 40))
        segment = extract(rows_table(readings(rng, n, start)), runaway_block_keys())
        start += 3 * n
        naive = []
        for _ in naive_window.update(segment, settings):
            naive.append(rule.evaluate(naive_window))
        block = runaway_block.advance(block_window, segment, settings)
        assert block is not None
        assert block.states == [v.state for v in naive]
        assert [rule.evaluate(block.window_at(i)) for i in range(n)] == naive
        assert repr(block_window) == repr(naive_window)  # NaN readings included


def runaway_block_keys() -> set[str]:
    return {"runaway/distance", "runaway/critical", "runaway/effect"}


@pytest.mark.parametrize("seed", range(5))
def test_hysteresis_run_equals_offering_each_state(seed: int) -> None:
    rng = np.random.default_rng(seed)
    states = [str(s) for s in rng.choice(["green", "amber", "red"], size=300, p=[0.5, 0.3, 0.2])]
    one, many = Hysteresis(confirm=2), Hysteresis(confirm=2)
    changed = [i for i, state in enumerate(states) if one.offer(state)]
    assert many.run(states) == changed and many == one


def dead_stream(rng: np.random.Generator) -> list:
    """Readings of two layers every 4 steps, with undead spikes, plus a loss every step."""
    tables = []
    for step in range(200):
        layers = []
        if step % 4 == 0:
            for layer in ("fc1", "fc2"):
                spike = rng.random() < 0.08
                undead = float(rng.integers(0, 3) + (40 if spike else 0))
                dead = float(np.clip(0.3 + rng.normal(0, 0.2), 0, 1))
                layers += [(step, layer, "dead_frac", dead), (step, layer, "undead", undead)]
        tables.append(([(step, "loss", float(rng.normal()))], layers))
    return tables


@pytest.mark.parametrize("seed", range(6))
def test_run_health_over_any_cut_equals_one_step_per_segment(seed: int) -> None:
    rng = np.random.default_rng(seed)
    steps = dead_stream(rng)
    settings = HealthSettings(confirm=2, undead_min_history=5, spike_hold=2)

    def judge(groups: list[list[int]]) -> list[object]:
        health, out = RunHealth(HealthSpec(settings=settings)), []
        for n, group in enumerate(groups):
            metrics = [m for i in group for m in steps[i][0]]
            layers = [r for i in group for r in steps[i][1]]
            final = n == len(groups) - 1
            out += health.feed(rows_table(metrics, layers), final=final).transitions
        return out

    reference = judge([[i] for i in range(len(steps))])
    assert len({t.state for t in reference}) >= 2  # dead_relu moves between states
    for _ in range(5):
        bounds = sorted(rng.choice(np.arange(1, len(steps)), size=15, replace=False).tolist())
        edges = [0, *bounds, len(steps)]
        groups = [list(range(a, b)) for a, b in itertools.pairwise(edges)]
        assert judge(groups) == reference


@pytest.mark.parametrize(("steps", "closes_at_end"), [(100, True), (95, False)])
def test_the_run_end_closes_the_last_catch_window_only_if_the_run_reached_its_end(
    steps: int, closes_at_end: bool
) -> None:
    settings = HealthSettings(catch_window=10, baseline_windows=2, confirm=1)
    roles = {"adversary": "d_loss", "content": "content"}
    gan = [[(s, "d_loss", 0.5), (s, "content", 10.0 / (1 + s))] for s in range(steps)]
    health = RunHealth(HealthSpec(roles=roles, settings=settings))
    health.feed(rows_table([r for step in gan for r in step]))
    catch = health.window("catch")
    assert catch.closed == (steps - 1) // 10
    health.feed(rows_table([]), final=True)
    assert catch.closed == (steps - 1) // 10 + closes_at_end
