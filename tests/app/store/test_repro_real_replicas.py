"""`repro` on real replicas: the demo's digits MLP trained for real, read back from a real store.

Replicas as the source defines them share their initial weights and differ in data order: at the
default budget they are green, on the dashboard's panel and in the verdict ingest would record.
A replica whose learning rate decays by 2% a step (a different schedule) predicts differently
enough to be red. The PD figures are checked against the pure functions on the stored matrices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainlight.app.components.beyond import repro_panel
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.arrays import LABELS_KEY, PREDICTIONS_KEY, read_arrays
from trainlight.app.store.read.beyond import load_beyond
from trainlight.app.store.read.repro import evaluate_repro
from trainlight.collectors import Monitor
from trainlight.collectors.health.prediction_difference import pair_difference
from trainlight.collectors.health.rules.repro import DEFAULT_BUDGET
from trainlight.collectors.schema import StoreLayout
from trainlight.demo.digits import load_digits_split, start_training, train_digits
from trainlight.demo.recipes import DigitsRecipe

STEPS = 600  # the quick demo's replica length
REPLICA = DigitsRecipe(predictions_every=50, init_seed=0)
DECAYED = DigitsRecipe(predictions_every=50, init_seed=0, lr_decay=0.98)


def train(store: Path, name: str, recipe: DigitsRecipe, seed: int, group: str) -> str:
    torch.set_num_threads(1)
    with Monitor(run=name, store=str(store), group=group, flush_interval=0.5) as mon:
        train_digits(mon, recipe, STEPS, seed)
        return mon.run_id


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    store = tmp_path_factory.mktemp("repro") / "store"
    ids = {
        "a": train(store, "a", REPLICA, 1, "replicas"),
        "b": train(store, "b", REPLICA, 2, "replicas"),
        "a again": train(store, "a again", REPLICA, 1, "schedules"),
        "decayed": train(store, "decayed", DECAYED, 3, "schedules"),
    }
    return store, ids


def test_replicas_share_initial_weights_and_differ_in_data_order() -> None:
    data = load_digits_split()
    first, second = start_training(REPLICA, 1, data), start_training(REPLICA, 2, data)
    for p, q in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(next(first.batches), next(second.batches))


def test_healthy_replicas_are_green_and_a_decayed_schedule_red(
    trained: tuple[Path, dict[str, str]],
) -> None:
    store_dir, ids = trained
    store = Store(StoreLayout.resolve(store_dir))
    try:
        Ingester(store).ingest_pending()
        with store.read() as cur:
            verdicts = dict(evaluate_repro(cur, [ids["a"], ids["a again"]]))
            beyond = load_beyond(cur, ids["a"])
            mine = read_arrays(cur, ids["a"], PREDICTIONS_KEY)
            theirs = read_arrays(cur, ids["b"], PREDICTIONS_KEY)
            labels = read_arrays(cur, ids["a"], LABELS_KEY)[0].matrix[:, 0]
    finally:
        store.close()
    assert beyond.repro_budget == DEFAULT_BUDGET
    assert verdicts[ids["a"]].state == verdicts[ids["b"]].state == "green", verdicts
    assert verdicts[ids["a again"]].state == verdicts[ids["decayed"]].state == "red", verdicts
    panel = repro_panel(beyond, ids["a"])
    assert "panel-green" in panel.className
    latest = beyond.replicas[0].latest
    assert latest is not None and (latest.previous, latest.step) == (500, 550)
    expected = pair_difference(mine[-1].matrix, theirs[-1].matrix, labels.astype(np.intp))
    assert latest.difference == expected and expected.on_labels
    assert 0 < expected.relative.value < DEFAULT_BUDGET
    assert 0 < expected.absolute.value < expected.relative.value
