"""Each rule on hand-made rows (the real-training tests live in tests/integration)."""

from __future__ import annotations

import math
import statistics

from tests.support.segments import rows_table
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import Transition

FAST = HealthSettings(
    confirm=1,
    catch_window=10,
    baseline_windows=2,
    catch_patience=50,
    runaway_patience=30,
    undead_min_history=5,
)


def feed_all(
    health: RunHealth, tables: list, signal: str | None = None, *, final: bool = True
) -> list[Transition]:
    """Feed the segments in order; with `final`, the last one ends the run."""
    out: list[Transition] = []
    for i, table in enumerate(tables):
        out += health.feed(table, final=final and i == len(tables) - 1).transitions
    return [c for c in out if signal is None or c.signal == signal]


def test_nonfinite_turns_red_at_the_step_of_the_first_nan_and_stays() -> None:
    health = RunHealth(HealthSpec(settings=FAST))
    changes = feed_all(
        health,
        [
            rows_table([(0, "loss", 1.0), (1, "acc", 0.5)]),
            rows_table([(2, "loss", 0.9), (3, "loss", math.nan), (4, "loss", math.inf)]),
            rows_table([(5, "loss", 0.1)]),
        ],
    )
    nonfinite = [c for c in changes if c.signal == "nonfinite"]
    assert [(c.state, c.step) for c in nonfinite] == [("green", 0), ("red", 3)]  # first data
    assert nonfinite[-1].reason == "loss = NaN at step 3"


def test_nonfinite_activations_name_the_layer() -> None:
    health = RunHealth(HealthSpec(settings=FAST))
    (change,) = feed_all(health, [rows_table(layers=[(7, "net.1", "nonfinite", 4.0)])], "nonfinite")
    assert (change.state, change.step) == ("red", 7)
    assert "layer 'net.1'" in change.reason


def dead_rows(step: int, fc1: float, fc2: float) -> object:
    return rows_table(layers=[(step, "fc1", "dead_frac", fc1), (step, "fc2", "dead_frac", fc2)])


def test_dead_relu_thresholds_name_the_worst_layer() -> None:
    health = RunHealth(HealthSpec(settings=FAST))
    tables = [dead_rows(10, 0.0, 0.05), dead_rows(20, 0.2, 0.05), dead_rows(30, 0.7, 0.05)]
    changes = feed_all(health, tables, "dead_relu")
    assert [c.state for c in changes] == ["green", "amber", "red"]
    assert changes[2].reason == "layer 'fc1' has 70% dead units at step 30"


def test_undead_spike_matches_median_plus_k_mad() -> None:
    history = [2.0, 3.0, 2.0, 4.0, 3.0, 2.0]
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    threshold = median + 6 * max(mad, 1.0)  # naive reference of the rule
    health = RunHealth(HealthSpec(settings=FAST))
    tables = [
        rows_table(layers=[(i, "fc1", "dead_frac", 0.0), (i, "fc1", "undead", u)])
        for i, u in enumerate(history)
    ]
    below = feed_all(
        health, [*tables, rows_table(layers=[(6, "fc1", "undead", threshold)])], "dead_relu"
    )
    assert [c.state for c in below] == ["green"]
    (spike,) = feed_all(
        health, [rows_table(layers=[(7, "fc1", "undead", threshold + 1)])], "dead_relu"
    )
    assert spike.state == "red" and "undead spike in layer 'fc1'" in spike.reason


def gan_rows(steps: range, adversary: callable, content: callable) -> list:  # type: ignore[valid-type]
    return [rows_table([(s, "d_loss", adversary(s)), (s, "content", content(s))]) for s in steps]


def test_catch_green_when_the_adversary_starts_to_fight() -> None:
    health = RunHealth(
        HealthSpec(roles={"adversary": "d_loss", "content": "content"}, settings=FAST)
    )
    changes = feed_all(
        health,
        gan_rows(
            range(100),
            adversary=lambda s: 0.1 + (0.0 if s < 40 else 1.0) + 0.01 * (s % 3),
            content=lambda s: 10.0 / (1 + s),
        ),
    )
    final = changes[-1]
    assert (final.signal, final.state) == ("catch", "green")
    assert final.step == 49 and "rose" in final.reason
    derived = health.feed(rows_table([(100, "content", 0.1)])).derived
    assert "catch/catch_step" not in {key for _, key, _ in derived}  # reported once, when found


def test_catch_red_when_content_flat_for_patience_without_a_catch() -> None:
    health = RunHealth(
        HealthSpec(roles={"adversary": "d_loss", "content": "content"}, settings=FAST)
    )
    changes = feed_all(
        health,
        gan_rows(
            range(200),
            adversary=lambda s: 0.5 + 0.01 * (s % 3),  # frozen adversary: nothing changes
            content=lambda s: max(1.0, 5.0 - 0.2 * s),
        ),
        "catch",
    )  # the content loss falls, then is flat from step 20
    assert [c.state for c in changes] == ["grey", "amber", "red"]
    assert changes[0].reason == "no verdict yet: 1 of 2 baseline windows (10 steps each)"
    red = changes[-1]
    # The EMA (alpha 0.05 per value) lags the raw curve: flat is declared once it settles.
    flat_since = int(red.reason.split("since step ")[1].split(" ")[0].replace(",", ""))
    assert red.reason.startswith("no catch: content loss flat since step")
    assert 20 <= flat_since <= 150 and (flat_since + 1) % 10 == 0
    assert red.step is not None and red.step - flat_since >= 50


def runaway_rows(step: int, distance: float, effect: float = 2.0) -> object:
    return rows_table(
        [
            (step, "runaway/distance", distance),
            (step, "runaway/critical", 0.1),
            (step, "runaway/effect", effect),
        ]
    )


def test_runaway_green_below_critical_amber_while_shrinking_red_when_stuck() -> None:
    health = RunHealth(HealthSpec(settings=FAST))
    green = feed_all(health, [runaway_rows(0, 0.05)], "runaway")
    shrinking = feed_all(health, [runaway_rows(10 + i, 0.9 - 0.1 * i) for i in range(4)], "runaway")
    stuck = feed_all(health, [runaway_rows(20 + 10 * i, 0.6) for i in range(8)], "runaway")
    assert [c.state for c in green] == ["green"]
    assert [c.state for c in shrinking] == ["amber"]
    assert [c.state for c in stuck] == ["red"] and "not shrinking" in stuck[0].reason


def test_same_transitions_whether_fed_at_once_or_resumed_from_saved_state() -> None:
    spec = HealthSpec(roles={"adversary": "d_loss", "content": "content"}, settings=FAST)
    tables = gan_rows(
        range(120),
        adversary=lambda s: 0.5 + (s > 70) * 2.0,
        content=lambda s: max(1.0, 5.0 - 0.2 * s),
    )
    tables.insert(50, rows_table([(50, "loss", math.nan)]))
    straight = feed_all(RunHealth(spec), tables)
    resumed: list[Transition] = []
    health = RunHealth(spec)
    for i, table in enumerate(tables):
        if i % 7 == 0:  # a server restart between two segments
            health = RunHealth.from_json(spec, health.to_json())
        resumed += health.feed(table).transitions
    assert resumed == straight and len(straight) >= 3


def lca_rows(step: int, layers: dict[str, float]) -> object:
    return rows_table(
        [(step, "lca/total", sum(layers.values()))],
        [(step, name, "lca", value) for name, value in layers.items()],
    )


def test_lca_amber_for_a_hurting_layer_red_when_the_total_rises_three_windows_running() -> None:
    settings = HealthSettings(confirm=1, lca_window=2, lca_red_windows=3)
    health = RunHealth(HealthSpec(settings=settings))
    helping = [lca_rows(s, {"fc1": -0.02, "fc2": -0.01}) for s in (0, 25)]
    one_hurts = [lca_rows(s, {"fc1": -0.03, "fc2": 0.01}) for s in (50, 75)]
    worse = [lca_rows(s, {"fc1": 0.02, "fc2": 0.01}) for s in range(100, 250, 25)]
    changes = feed_all(health, helping + one_hurts + worse, "lca")
    assert [c.state for c in changes] == ["green", "amber", "red"]
    assert changes[1].reason == "layer 'fc2' hurt: LCA +0.02 over steps 50-75"
    assert changes[2].step == 225 and "rose in 3 windows in a row" in changes[2].reason
    assert "rising since step 100" in changes[2].reason
