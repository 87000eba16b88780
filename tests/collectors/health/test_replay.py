"""The same rows give the same `health` table however they are cut into segments.

Four real short trainings (the demo's GAN whose adversary catches, a GAN whose output mean runs
away, an MLP whose first ReLU layer is dead, a CNN with LCA measured) are recorded once: the rows
their Monitors wrote, in delivery order. Each is then replayed into fresh stores through the real
ingest path (the inbox and the Ingester, or `ingest_batch`), cut at random row boundaries (steps
split in the middle, heartbeats without rows) under many seeds, some with a server restart half-
way (the rules resume from `health_state`). Every replay must write the same state changes, at
the same steps, with the same reasons, and the same derived rows. The reference is the run
replayed as one segment; the verdicts themselves are checked too, so agreement is not vacuous.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support import trainings
from tests.support.replay import Recording, cut, health_rows, record, replay
from trainlight.collectors.health.registry import specs

TIMED = {spec.name for spec in specs() if spec.timed}

pytestmark = pytest.mark.slow

# 4 seeds cover every pairing of transport (inbox: even seeds, batch) and restart (seeds 0 and 3).
SEEDS = range(4)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Recording]]:
    store = tmp_path_factory.mktemp("recorded")
    ids = {
        "catches": trainings.train_gan(store, "gan catches", steps=600),
        "runaway": trainings.train_gan(
            store,
            "gan runaway",
            dc_init=2.0,
            mean_blind=True,
            adversary_weight=0.0,
            roles=False,
            steps=600,
        ),
        "dead": trainings.train_mlp(store, "dead mlp", hidden_bias=-20.0, steps=150),
        "lca": trainings.train_lca_cnn(store, "lca cnn"),
    }
    yield {name: record(store, run_id) for name, run_id in ids.items()}


def replayed(
    tmp_path: Path, recordings: dict[str, Recording], seed: int | None
) -> dict[str, list[tuple[object, ...]]]:
    """Every recording replayed into one fresh store; seed None: each run as one segment."""
    rng = np.random.default_rng(seed)
    names = list(recordings)
    runs = [cut(recordings[n], rng, max_pieces=1 if seed is None else 60) for n in names]
    store = tmp_path / f"replay-{seed}"
    via_inbox, restart = seed is None or seed % 2 == 0, seed is not None and seed % 3 == 0
    replay(store, runs, rng, via_inbox=via_inbox, restart=restart)
    # Signals judged on send times (`progress`) see re-cut segments sent at other times: they
    # are the documented exception to "the same rows, the same verdicts".
    return {
        n: [row for row in health_rows(store, recordings[n].header.run_id) if row[0] not in TIMED]
        for n in names
    }


def test_recorded_runs_have_the_verdicts_their_training_deserves(
    tmp_path: Path, recordings: dict[str, Recording]
) -> None:
    whole = replayed(tmp_path, recordings, None)

    def final(name: str, signal: str) -> str:
        return [row[1] for row in whole[name] if row[0] == signal][-1]

    assert final("catches", "catch") == "green"
    assert final("runaway", "runaway") == "red"
    assert final("dead", "dead_relu") == "red"
    assert {row[0] for row in whole["lca"]} >= {"lca", "dead_relu", "nonfinite"}
    assert any(row[0] == "derived" for row in whole["catches"])


def test_random_segment_boundaries_and_restarts_give_identical_health_tables(
    tmp_path: Path, recordings: dict[str, Recording]
) -> None:
    reference = replayed(tmp_path, recordings, None)
    for seed in SEEDS:
        got = replayed(tmp_path, recordings, seed)
        for name, rows in got.items():
            assert rows == reference[name], f"{name}, seed {seed}"
