"""`overfit`: the rule against a plain loop, any segmentation giving the same verdicts, the
scenarios that must (and must never) turn red, the keys it recognises, and real trainings."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from tests.support.segments import rows_table
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED

SETTINGS = HealthSettings()
Rows = list[tuple[int, str, float]]


def naive_states(rows: Rows, s: HealthSettings, val: str = "val_loss") -> list[str]:
    """The rule as a plain loop: what each validation reading needs re-read from scratch."""
    vals = [(step, v) for step, k, v in rows if k == val and not math.isnan(v)]
    smoothed, train, fell = [], [], []
    for j, (step, _) in enumerate(vals):
        recent = [v for _, v in vals[max(0, j - s.overfit_smooth + 1) : j + 1]]
        smoothed.append(statistics.median(recent))
        losses = [v for st, k, v in rows if k == "loss" and st <= step][-s.overfit_train_window :]
        train.append(statistics.median(losses) if losses else None)
        scores = [v for st, k, v in rows if k == "val_acc" and st <= step]
        smooth_scores = [
            statistics.median(scores[max(0, n - s.overfit_smooth + 1) : n + 1])
            for n in range(len(scores))
        ]
        best_score = max(smooth_scores, default=None)
        fell.append(
            best_score is None
            or smooth_scores[-1] < best_score - s.overfit_metric_drop * abs(best_score)
        )
    states = []
    for i in range(len(vals)):
        best = max(j for j in range(i + 1) if smoothed[j] <= min(smoothed[: j + 1]))
        rising, past = 0, 0
        for k in range(best + 1, i + 1):
            held = train[k] is None or train[best] is None or train[k] <= train[best]
            rise = (smoothed[k] - smoothed[best]) / max(abs(smoothed[best]), 1e-12)
            rising = rising + 1 if held and rise > s.overfit_tol else 0
            past = past + 1 if held and rise > s.overfit_margin and fell[k] else 0
        if i + 1 < s.overfit_min_evals:
            states.append(GREY)
        elif past >= s.overfit_patience:
            states.append(RED)
        else:
            states.append(AMBER if rising >= s.overfit_rising else GREEN)
    return states


def training(
    rng: np.random.Generator,
    evals: int = 40,
    every: int = 10,
    rise_from: int = 15,
    drop: bool = True,
) -> Rows:
    """A training loss that keeps falling, logged every step, and a validation loss (and
    accuracy) every `every` steps that falls, then from evaluation `rise_from` rises (the
    accuracy falling with it when `drop`)."""
    rows: Rows = []
    for step in range(evals * every):
        rows.append((step, "loss", float(2.0 * math.exp(-step / 100) * rng.lognormal(0, 0.05))))
        if step % every == 0:
            n = step // every
            rise = max(0, n - rise_from) * 0.03
            val = (0.5 + 1.5 * math.exp(-n / 4) + rise) * float(rng.lognormal(0, 0.02))
            acc = 0.9 - (rise / 4 if drop else 0.0) + float(rng.normal(0, 0.003))
            rows += [(step, "val_loss", val), (step, "val_acc", acc)]
    return rows


def window_states(rows: Rows, s: HealthSettings = SETTINGS) -> list[str]:
    health = RunHealth(HealthSpec(settings=s))
    health.feed(rows_table(rows), final=True)
    window = health.window("overfit")
    # Re-feed reading by reading to read the window's state after each validation reading.
    health = RunHealth(HealthSpec(settings=s))
    out = []
    steps = sorted({step for step, key, _ in rows if key == "val_loss"})
    for low, high in itertools.pairwise([-1, *steps]):
        part = [r for r in rows if low < r[0] <= high]
        health.feed(rows_table(part), final=True)
        out.append(health.window("overfit").state(s))
    assert window.readings == len(out)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_the_window_matches_the_plain_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = training(rng, rise_from=int(rng.integers(5, 30)), drop=bool(seed % 2))
    settings = HealthSettings(
        overfit_smooth=int(rng.integers(1, 4)),
        overfit_margin=float(rng.uniform(0.1, 0.4)),
        overfit_patience=int(rng.integers(1, 4)),
        overfit_train_window=int(rng.integers(3, 30)),
    )
    assert window_states(rows, settings) == naive_states(rows, settings)


def changes(rows: Rows, cuts: list[int], s: HealthSettings = SETTINGS) -> list[tuple]:
    health = RunHealth(HealthSpec(settings=s))
    found = []
    last = max(step for step, _, _ in rows)
    bounds = [-1, *cuts, last]
    for low, high in itertools.pairwise(bounds):
        table = rows_table([r for r in rows if low < r[0] <= high])
        result = health.feed(table, final=high == last)
        found += [(t.state, t.step, t.reason) for t in result.transitions if t.signal == "overfit"]
    return found


def test_any_segmentation_gives_the_same_changes() -> None:
    rng = np.random.default_rng(3)
    rows = training(rng)
    whole = changes(rows, [])
    assert [state for state, _, _ in whole] == [GREY, GREEN, AMBER, RED]
    for cuts in ([5], [149, 150, 151], sorted(rng.choice(399, 30, replace=False).tolist())):
        assert changes(rows, [int(c) for c in cuts]) == whole


def test_a_rising_validation_loss_whose_accuracy_holds_is_amber_never_red() -> None:
    found = changes(training(np.random.default_rng(1), drop=False), [100])
    assert [state for state, _, _ in found] == [GREY, GREEN, AMBER]
    assert "val_loss" in found[-1][2] and "val_acc" in found[-1][2]


def test_without_a_score_the_loss_alone_turns_red_with_the_best_named() -> None:
    rows = [r for r in training(np.random.default_rng(2), drop=False) if r[1] != "val_acc"]
    state, _, reason = changes(rows, [])[-1]
    assert state == RED and "from its best" in reason and "at step" in reason


def test_a_training_loss_rising_too_is_not_overfitting() -> None:
    rows = [
        (step, key, 0.2 + step / 200 if key == "loss" else value)
        for step, key, value in training(np.random.default_rng(4))
    ]
    assert {state for state, _, _ in changes(rows, [])} <= {GREY, GREEN}


@pytest.mark.parametrize("val_key", ["valid_loss", "eval_loss", "val/loss", "validation_loss"])
def test_validation_losses_are_recognised_by_name(val_key: str) -> None:
    rows = [
        (s, val_key if k == "val_loss" else k, v) for s, k, v in training(np.random.default_rng(5))
    ]
    assert changes(rows, [])[-1][0] == RED


def test_roles_name_the_validation_loss_and_score() -> None:
    renamed = {"val_loss": "holdout_nll", "val_acc": "holdout_top1", "loss": "nll"}
    rows = [(s, renamed[k], v) for s, k, v in training(np.random.default_rng(6), drop=False)]
    spec = HealthSpec(
        roles={"loss": "nll", "val_loss": "holdout_nll", "val_metric": "holdout_top1"}
    )
    health = RunHealth(spec)
    result = health.feed(rows_table(rows), final=True)
    states = [t.state for t in result.transitions if t.signal == "overfit"]
    assert states == [GREY, GREEN, AMBER]  # the named score holds: never red


def test_amber_records_where_the_validation_loss_was_at_its_best() -> None:
    health = RunHealth(HealthSpec())
    derived = health.feed(rows_table(training(np.random.default_rng(3))), final=True).derived
    marks = {key: (step, value) for step, key, value in derived if key.startswith("overfit/")}
    flagged_at, best_step = marks["overfit/from_step"]
    assert 140 <= best_step <= 160 < flagged_at  # the loss bottoms out near evaluation 15


def test_a_run_resumed_from_its_saved_state_judges_as_if_never_saved() -> None:
    rows = training(np.random.default_rng(7))
    straight, resumed = RunHealth(HealthSpec()), RunHealth(HealthSpec())
    for i, low in enumerate(range(-1, 400, 37)):
        table = rows_table([r for r in rows if low < r[0] <= low + 37])
        if i == 6:
            resumed = RunHealth.from_json(HealthSpec(), resumed.to_json())
        assert resumed.feed(table) == straight.feed(table)
    assert resumed.to_json() == straight.to_json()


@pytest.mark.slow
def test_real_wide_mlps_clean_labels_never_red_noisy_labels_red(tmp_path: Path) -> None:
    from tests.support.health_replay import judged_states
    from tests.support.overfit_digits import OverfitCase, train_overfit

    clean = train_overfit(tmp_path / "clean", OverfitCase("clean", steps=1000))
    noisy = train_overfit(tmp_path / "noisy", OverfitCase("noisy", label_noise=0.4, steps=1000))
    assert not clean.doomed and noisy.doomed  # labels from the test digits' accuracy only
    assert RED not in judged_states(tmp_path / "clean", "overfit")
    assert RED in judged_states(tmp_path / "noisy", "overfit")
