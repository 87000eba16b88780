"""Real short trainings turn the badges the colour their training deserves.

Each run is written by a real Monitor into a store and ingested by the real ingester; the states
are read back from the `health` table, as the dashboard reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import trainings
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.schema import StoreLayout

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("signals")


@pytest.fixture(scope="module")
def runs(store_dir: Path) -> Iterator[dict[str, str]]:
    ids = {
        "dead": trainings.train_mlp(store_dir, "dead mlp", hidden_bias=-20.0),
        "sane": trainings.train_mlp(store_dir, "sane mlp"),
        "catches": trainings.train_gan(store_dir, "gan catches"),
        "frozen": trainings.train_gan(store_dir, "gan frozen adversary", adversary_lr=0.0),
        "runaway": trainings.train_gan(
            store_dir,
            "gan runaway",
            dc_init=2.0,
            mean_blind=True,
            adversary_weight=0.0,
            roles=False,
        ),
        "diverges": trainings.train_diverging(store_dir, "diverges"),
    }
    yield ids


@pytest.fixture(scope="module")
def history(store_dir: Path, runs: dict[str, str]) -> dict[str, list[tuple[str, str, int, str]]]:
    store = Store(StoreLayout.resolve(store_dir))
    try:
        Ingester(store).ingest_pending()
        with store.read() as cur:
            rows = cur.execute(
                "SELECT run_id, signal, state, step, reason FROM health ORDER BY rowid"
            ).fetchall()
    finally:
        store.close()
    by_name: dict[str, list[tuple[str, str, int, str]]] = {name: [] for name in runs}
    names = {run_id: name for name, run_id in runs.items()}
    for run_id, signal, state, step, reason in rows:
        by_name[names[run_id]].append((signal, state, step, reason))
    return by_name


def final(history: list[tuple[str, str, int, str]], signal: str) -> tuple[str, int, str]:
    changes = [(state, step, reason) for s, state, step, reason in history if s == signal]
    assert changes, f"no {signal} verdict at all"
    return changes[-1]


def test_dead_hidden_layer_turns_dead_relu_red_naming_the_layer(history) -> None:
    state, _, reason = final(history["dead"], "dead_relu")
    assert state == "red" and "layer '1'" in reason and "100% dead" in reason


def test_sane_mlp_stays_green(history) -> None:
    assert {state for s, state, _, _ in history["sane"] if s == "dead_relu"} == {"green"}
    assert final(history["sane"], "nonfinite")[0] == "green"


def test_adversary_that_catches_turns_catch_green_with_the_step(history) -> None:
    state, step, reason = final(history["catches"], "catch")
    assert state == "green" and step > 0 and reason.startswith(f"caught at step {step:,}")


def test_frozen_adversary_turns_catch_red_after_the_plateau(history) -> None:
    # Red once the content loss has been flat for the patience; this run's content loss moves
    # again near its end (a new plateau starts), which the rule reports as amber.
    reds = [r for s, state, _, r in history["frozen"] if s == "catch" and state == "red"]
    assert reds and "content loss flat since step" in reds[0]
    assert final(history["frozen"], "catch")[0] != "green"


def test_runaway_dc_offset_turns_runaway_red_and_healthy_generator_green(history) -> None:
    assert final(history["runaway"], "runaway")[0] == "red"
    assert final(history["catches"], "runaway")[0] == "green"


def test_loss_that_becomes_nan_turns_nonfinite_red_at_that_step(history) -> None:
    state, step, reason = final(history["diverges"], "nonfinite")
    assert state == "red" and reason.endswith(f"at step {step:,}")
    assert ("loss = NaN" in reason) or ("loss = +Inf" in reason)
