"""`trainlight landscape` against what a real training recorded: the α row (β = 0) it computes
from a checkpoint equals the slice `mon.landscape` took at that step, with the seed, span and
points read from the store; and a store held by another process needs them on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.landscape_runs import (
    MODEL_SPEC,
    PROBE_SPEC,
    SliceSetup,
    factory,
    probe_loss,
    train_with_slices,
)
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.landscape import landscape_slices
from trainlight.collectors.schema import StoreLayout
from trainlight.collectors.signals.landscape import alphas_for, filter_normalised_direction

CHECKPOINT_STEP = 30


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(store, checkpoint, run id) of one short training, its segments ingested."""
    root = tmp_path_factory.mktemp("landscape_cli")
    store, checkpoint = root / "store", root / "step30.pt"
    run_id = train_with_slices(store, checkpoint, CHECKPOINT_STEP, SliceSetup())
    opened = Store(StoreLayout.resolve(store))
    try:
        Ingester(opened).ingest_pending()
    finally:
        opened.close()
    return store, checkpoint, run_id


def landscape_command(run_id: str, checkpoint: Path, store: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "trainlight.app.cli", "landscape", run_id]
    command += ["--model", MODEL_SPEC, "--probe", PROBE_SPEC, "--checkpoint", str(checkpoint)]
    return [*command, "--dir", str(store), *extra]


def run_command(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # tests.support importable
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


def recorded_slice(store: Path, run_id: str, step: int) -> np.ndarray:
    opened = Store(StoreLayout.resolve(store))
    try:
        with opened.read() as cur:
            slices = landscape_slices(cur, run_id)
    finally:
        opened.close()
    assert slices is not None and step in slices.steps
    return slices.losses[slices.steps.index(step)]


def test_the_alpha_row_at_a_checkpoint_is_the_slice_recorded_at_that_step(
    trained_run: tuple[Path, Path, str],
) -> None:
    store, checkpoint, run_id = trained_run
    done = run_command(landscape_command(run_id, checkpoint, store))
    assert done.returncode == 0, done.stderr
    assert "seed 5, span 0.7, 7 points" in done.stdout
    document = json.loads(StoreLayout.resolve(store).surface_path(run_id).read_text())
    assert (document["seed"], document["span"], document["points"]) == (5, 0.7, 7)
    row = np.array(document["losses"][len(document["betas"]) // 2], dtype=np.float64)
    recorded = recorded_slice(store, run_id, CHECKPOINT_STEP)
    np.testing.assert_allclose(row, recorded, rtol=1e-6, atol=0)  # stored as float32
    assert np.ptp(recorded) > 0.05  # a slice with shape, not a flat line

    # A direction normalised once, to the initial weights (what the slices used to do), gives
    # another row at the checkpoint: this test would catch a slicer that stopped renormalising.
    torch.manual_seed(0)  # the training's initial weights
    once = filter_normalised_direction(list(factory().named_parameters()), seed=5)
    now = filter_normalised_direction(list(loaded(checkpoint).named_parameters()), seed=5)
    np.testing.assert_allclose(naive_slice(checkpoint, now), recorded, rtol=1e-5)
    assert not np.allclose(naive_slice(checkpoint, once), recorded, rtol=1e-3)


def loaded(checkpoint: Path) -> torch.nn.Module:
    model = factory()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return model.eval()


def naive_slice(checkpoint: Path, direction: dict[str, torch.Tensor]) -> list[float]:
    """Losses of moved copies of the checkpoint's model, at the run's seven α."""
    losses = []
    for alpha in alphas_for(7, 0.7):
        model = loaded(checkpoint)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.add_(alpha * direction[name])
            losses.append(float(probe_loss(model)))
    return losses


def test_a_store_held_by_another_process_needs_the_options(
    trained_run: tuple[Path, Path, str], tmp_path: Path
) -> None:
    store, checkpoint, run_id = trained_run
    holder = Store(StoreLayout.resolve(store))  # as a running `trainlight serve` would
    try:
        refused = run_command(landscape_command(run_id, checkpoint, store, "--seed", "5"))
        assert refused.returncode == 2
        assert "Or pass --seed, --span and --points" in refused.stderr, refused.stderr
        given = ["--seed", "5", "--span", "0.7", "--points", "7"]
        done = run_command(landscape_command(run_id, checkpoint, store, *given))
        assert done.returncode == 0, done.stderr
    finally:
        holder.close()
    document = json.loads(StoreLayout.resolve(store).surface_path(run_id).read_text())
    row = document["losses"][3]
    np.testing.assert_allclose(row, recorded_slice(store, run_id, CHECKPOINT_STEP), rtol=1e-6)


def test_a_run_without_slices_names_the_options_to_pass(
    trained_run: tuple[Path, Path, str],
) -> None:
    store, checkpoint, _ = trained_run
    done = run_command(landscape_command("no-such-run", checkpoint, store, "--points", "7"))
    assert done.returncode == 2
    assert "holds no landscape/{seed,span,points} of run no-such-run" in done.stderr
    assert done.stderr.rstrip().endswith("pass --seed, --span"), done.stderr
