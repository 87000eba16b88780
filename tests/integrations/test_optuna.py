"""`HealthPruner` and `monitor_for` in a real Optuna study of short real trainings: the trials
whose learning rate blows the loss up are pruned by trainlight's verdict, the others complete,
and the inner pruner still decides the rest."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from tests.support.store_rows import last_header, logged, run_ids  # noqa: E402
from trainlight.demo.digits import load_digits_split  # noqa: E402
from trainlight.integrations.optuna import RUN_ID_ATTR, HealthPruner, monitor_for  # noqa: E402

FLUSH = 0.3
# Each step lasts at least this long, as real ones do: 400 steps outlast several flush intervals
# after any verdict. (A 0.1 ms step let a busy CI finish a doomed trial before its first flush
# judged it: the trial then failed on its NaN instead of being pruned.)
MIN_STEP_S = 0.005


def objective_in(store: Path, steps: int = 400):  # type: ignore[no-untyped-def]
    data = load_digits_split()

    def objective(trial: optuna.trial.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 100.0, log=True)
        torch.manual_seed(trial.number)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        with monitor_for(trial, store=store, flush_interval=FLUSH) as mon:
            for step in range(steps):
                idx = torch.randint(0, len(data.train), (32,))
                logits = model(data.images[data.train[idx]])
                targets = nn.functional.one_hot(data.labels[data.train[idx]], 10).float()
                loss = nn.functional.mse_loss(logits, targets)  # blows up to Inf at lr 100
                opt.zero_grad()
                loss.backward()
                opt.step()
                mon.log(step, loss=loss)
                time.sleep(MIN_STEP_S)
                trial.report(loss.item(), step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return float(loss)

    return objective


def test_trials_that_turn_red_are_pruned_and_healthy_ones_complete(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="digits", pruner=HealthPruner(signals=["nonfinite"]))
    for lr in (0.05, 100.0, 0.1, 100.0):
        study.enqueue_trial({"lr": lr})
    study.optimize(objective_in(tmp_path), n_trials=4)
    states = [(t.params["lr"], t.state.name) for t in study.trials]
    assert states == [(0.05, "COMPLETE"), (100.0, "PRUNED"), (0.1, "COMPLETE"), (100.0, "PRUNED")]
    assert len(run_ids(tmp_path)) == 4
    for trial in study.trials:
        run_id = trial.user_attrs[RUN_ID_ATTR]
        header = last_header(tmp_path, run_id)
        assert header.name == f"digits trial {trial.number}" and header.group == "digits"
        assert header.config["lr"] == trial.params["lr"]
        if trial.state.name == "COMPLETE":
            assert header.status == "finished"
            continue
        assert header.status == "stopped"
        assert header.stop_reason.startswith("auto-pruned: nonfinite red: loss = ")
        losses = logged(tmp_path, "loss", run_id)
        first_bad = next(wall for _, value, wall in losses if not math.isfinite(value))
        assert (losses[-1][2] - first_bad).total_seconds() <= 2 * FLUSH  # two flushes at most


def test_the_inner_pruner_decides_what_trainlight_does_not(tmp_path: Path) -> None:
    """A healthy but slow trial (lr 1e-4) is MedianPruner's call, and its run says so."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    inner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=100)
    study = optuna.create_study(pruner=HealthPruner(inner, signals=["nonfinite"]))
    study.enqueue_trial({"lr": 0.1})
    study.enqueue_trial({"lr": 1e-4})
    study.optimize(objective_in(tmp_path, steps=300), n_trials=2)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    header = last_header(tmp_path, study.trials[1].user_attrs[RUN_ID_ATTR])
    assert header.status == "stopped"
    assert header.stop_reason == "pruned by Optuna's MedianPruner"
