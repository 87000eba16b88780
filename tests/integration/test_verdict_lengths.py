"""The same default settings judge the demo's GANs alike at two lengths (3x apart).

Real trainings (trainlight.demo.gan through the public Monitor API, default health settings,
length declared with `total_steps`), ingested by the real ingester; the states are read back from
the `health` table. A frozen adversary turns `catch` red, a healthy GAN turns it green, a DC
offset nothing pulls back turns `runaway` red, and the doomed runs turn red well before their end
at both lengths.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support import trainings
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.schema import StoreLayout

pytestmark = pytest.mark.slow

LENGTHS = (600, 1800)
History = dict[
    tuple[str, int], list[tuple[str, str, int]]
]  # (run, length) -> (signal, state, step)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    store_dir = tmp_path_factory.mktemp("lengths")
    runs: dict[str, tuple[str, int]] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only contend on a shared machine
    try:
        _train(store_dir, runs)
    finally:
        torch.set_num_threads(threads)
    store = Store(StoreLayout.resolve(store_dir))
    try:
        Ingester(store).ingest_pending()
        with store.read() as cur:
            rows = cur.execute(
                "SELECT run_id, signal, state, step FROM health ORDER BY seq"
            ).fetchall()
    finally:
        store.close()
    out: History = {run: [] for run in runs.values()}
    for run_id, signal, state, step in rows:
        out[runs[run_id]].append((signal, state, step))
    return out


def _train(store_dir: Path, runs: dict[str, tuple[str, int]]) -> None:
    for steps in LENGTHS:
        for name, knobs in (
            ("catches", {}),
            ("frozen", {"adversary_lr": 0.0}),
            ("runaway", {"dc_init": 2.0, "mean_blind": True, "adversary_weight": 0.0}),
        ):
            roles = name != "runaway"
            run_id = trainings.train_gan(store_dir, name, steps=steps, roles=roles, **knobs)  # type: ignore[arg-type]
            runs[run_id] = (name, steps)


def final(changes: list[tuple[str, str, int]], signal: str) -> str:
    states = [state for s, state, _ in changes if s == signal]
    assert states, f"no {signal} verdict at all"
    return states[-1]


def first_red(changes: list[tuple[str, str, int]], signal: str) -> int | None:
    return next((step for s, state, step in changes if s == signal and state == "red"), None)


@pytest.mark.parametrize("steps", LENGTHS)
def test_same_defaults_give_the_expected_verdicts_at_each_length(
    history: History, steps: int
) -> None:
    assert final(history[("catches", steps)], "catch") == "green"
    assert final(history[("catches", steps)], "runaway") == "green"
    assert first_red(history[("catches", steps)], "catch") is None
    assert final(history[("frozen", steps)], "catch") == "red"
    assert final(history[("runaway", steps)], "runaway") == "red"


@pytest.mark.parametrize(("steps", "by"), [(600, 0.95), (1800, 0.5)])
def test_doomed_runs_turn_red_before_their_end(history: History, steps: int, by: float) -> None:
    """A frozen adversary levels the content loss off at the same step whatever the length, so
    the longer run is red at a smaller fraction of its length (hysteresis counts segments,
    whose size follows the flush clock: the bounds leave room for it)."""
    frozen = first_red(history[("frozen", steps)], "catch")
    runaway = first_red(history[("runaway", steps)], "runaway")
    assert frozen is not None and frozen < by * steps
    assert runaway is not None and runaway < 0.5 * steps


def test_every_signal_with_inputs_has_a_state_from_its_first_evaluation(history: History) -> None:
    for changes in history.values():
        first = {}
        for signal, state, step in changes:
            first.setdefault(signal, (state, step))
        assert first["nonfinite"][1] < 200 and first["runaway"][1] < 200
        if "catch" in first:
            assert first["catch"][1] < 200  # grey with its reason, or a verdict
