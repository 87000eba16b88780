"""What the labelled-batch benches share: reading a run's logged series back from its store, the
stopping rules people use today run on the same readings, and one summary line per rule.

The comparisons run the real libraries' code, not re-implementations: Lightning's
`SpikeDetection` (lightning.fabric) on the main loss, Lightning's `EarlyStopping` on the
validation loss, and Optuna's `MedianPruner` in a real in-memory study, one per group of runs of
the same length, trials in batch order (its first `n_startup_trials` are never pruned). Each is
run at several settings; `summarise` prints how each setting did, and the best one that stops no
healthy run is the figure to beat (issue 15's bar).

Needs the `integrations` extra (lightning, optuna).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tests.support.store_rows import logged

Series = list[tuple[int, float]]


@dataclass
class Run:
    """One run of a batch: its label (from final quality only) and what it logged."""

    name: str
    steps: int  # its planned length: a stop at step s saves 1 - s / steps of it
    doomed: bool
    loss: Series = field(default_factory=list)
    val_loss: Series = field(default_factory=list)


def read_run(store: Path, name: str, steps: int, doomed: bool) -> Run:
    return Run(name, steps, doomed, readings(store, "loss"), readings(store, "val_loss"))


def readings(store: Path, key: str, table: str = "metrics") -> Series:
    """The (step, value) readings of one key the run logged into the store."""
    return [(step, value) for step, value, _ in logged(store, key, table=table)]


def summarise(title: str, runs: Sequence[Run], stops: Sequence[int | None]) -> int:
    """Print how one stopping rule did on the batch (the step it stopped each run at, or None);
    returns the number of healthy runs it stopped."""
    right = sum((stop is not None) == run.doomed for run, stop in zip(runs, stops, strict=True))
    false_kill = sum(
        stop is not None and not run.doomed for run, stop in zip(runs, stops, strict=True)
    )
    doomed = [(run, stop) for run, stop in zip(runs, stops, strict=True) if run.doomed]
    saved = sum(1 - stop / run.steps for run, stop in doomed if stop is not None)
    caught = sum(stop is not None for _, stop in doomed)
    print(
        f"{title:38}: {right}/{len(runs)} right, {false_kill} healthy stopped, "
        f"{caught}/{len(doomed)} doomed stopped, "
        f"compute saved on them {(saved / len(doomed) if doomed else 0):.0%}"
    )
    return false_kill


def compare_baselines(runs: Sequence[Run]) -> None:
    """Every baseline at each of its settings on the batch."""
    for rtol in (2.0, 1.0, 0.5, 0.3):
        stops = [spike_detection_stop(run.loss, rtol) for run in runs]
        summarise(f"Lightning SpikeDetection rtol {rtol:g}", runs, stops)
    if any(len(run.val_loss) > 1 for run in runs):  # validated during training
        for patience in (3, 5, 10):
            stops = [early_stopping_stop(run.val_loss, patience) for run in runs]
            summarise(f"Lightning EarlyStopping patience {patience}", runs, stops)
    for warmup in (0.0, 0.1, 0.25, 0.5):
        stops = median_pruner_stops(runs, warmup)
        summarise(f"Optuna MedianPruner warmup {warmup:.0%} of steps", runs, stops)


class _OneProcessFabric:
    """What `SpikeDetection.on_train_batch_end` asks of Fabric, for a single process."""

    global_rank = 0

    class strategy:  # mirrors `fabric.strategy`
        root_device = torch.device("cpu")

        @staticmethod
        def barrier() -> None:
            return None

        @staticmethod
        def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
            return decision


def spike_detection_stop(loss: Series, rtol: float, window: int = 10) -> int | None:
    """Lightning's `SpikeDetection(mode="min", window, rtol)` fed the main loss reading by
    reading: the step it raises `TrainingSpikeException` at (it stops at the first spike)."""
    from lightning.fabric.utilities.spike import SpikeDetection, TrainingSpikeException

    fabric = _OneProcessFabric()
    with tempfile.TemporaryDirectory(prefix="trainlight-spike-detection-") as tmp:
        detector = SpikeDetection(window=window, rtol=rtol, exclude_batches_path=tmp)
        for batch_idx, (step, value) in enumerate(loss):
            try:
                detector.on_train_batch_end(fabric, torch.tensor(value), None, batch_idx)  # type: ignore[arg-type]
            except TrainingSpikeException:
                return step
    return None


def early_stopping_stop(val_loss: Series, patience: int) -> int | None:
    """Lightning's `EarlyStopping(monitor="val_loss", mode="min", patience)` judging each
    validation reading: the step it stops at."""
    from lightning.pytorch.callbacks import EarlyStopping

    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=patience)
    for step, value in val_loss:
        should_stop, _ = stopper._evaluate_stopping_criteria(torch.tensor(value))
        if should_stop:
            return step
    return None


def pruner_readings(run: Run) -> Series:
    """What a sweep reports to Optuna: the validation loss where the run logs one during
    training, else the training loss averaged over each 10 steps (an epoch-like figure: single
    steps are too noisy to compare across trials)."""
    if len(run.val_loss) > 1:
        return run.val_loss
    out: Series = []
    for start in range(0, len(run.loss) - 9, 10):
        chunk = run.loss[start : start + 10]
        out.append((chunk[-1][0], sum(v for _, v in chunk) / len(chunk)))
    return out


def median_pruner_stops(runs: Sequence[Run], warmup: float) -> list[int | None]:
    """Optuna's `MedianPruner(n_warmup_steps=warmup x steps)` in one real study per run length,
    trials in batch order: the step each trial was pruned at."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    stops: dict[str, int | None] = {}
    for steps in sorted({run.steps for run in runs}):
        pruner = optuna.pruners.MedianPruner(n_warmup_steps=int(warmup * steps))
        study = optuna.create_study(direction="minimize", pruner=pruner)
        for run in (r for r in runs if r.steps == steps):
            trial = study.ask()
            stops[run.name] = None
            readings = pruner_readings(run)
            for step, value in readings:
                trial.report(value if value == value else float("inf"), step)
                if trial.should_prune():
                    stops[run.name] = step
                    break
            state = optuna.trial.TrialState.PRUNED if stops[run.name] is not None else None
            if state is None:
                last = readings[-1][1] if readings else float("inf")
                study.tell(trial, last if last == last else float("inf"))
            else:
                study.tell(trial, state=state)
    return [stops[run.name] for run in runs]
