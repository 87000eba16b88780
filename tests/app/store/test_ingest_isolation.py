"""A pass of many runs is one transaction, yet one bad segment or one failing run holds back
nothing else: data errors are isolated by halving the batch, other failures by retrying run by
run (the failing run waits for the next pass, in order)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import trainlight.app.store.ingest.transaction as ingest_module
from tests.support.segments import metrics_segment
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.batch_rows import RunBatch
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.schema import StoreLayout, list_segment_files, write_atomically

RUNS = [f"run-{r}" for r in range(6)]
SEQS = range(4)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(StoreLayout.resolve(tmp_path))
    yield opened
    opened.close()


def deliver_all(store: Store, bad: tuple[str, int] | None = None) -> None:
    """Every run's segments in the inbox; `bad` holds a row `latest` cannot take (no key)."""
    for run_id in RUNS:
        store.layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
        for seq in SEQS:
            rows: list[tuple[int, str | None, float]] = [(seq, "loss", 1.0), (seq, "acc", 0.5)]
            if (run_id, seq) == bad:
                rows.append((seq, None, 2.0))
            payload = metrics_segment(run_id, seq, rows)  # type: ignore[arg-type]
            write_atomically(store.layout.segment_path(run_id, seq), payload)


def stored(store: Store) -> list[tuple[str, int]]:
    with store.read() as cur:
        return cur.execute("SELECT run_id, seq FROM segments ORDER BY ALL").fetchall()


def test_a_segment_bad_at_insert_is_rejected_alone_and_the_rest_goes_in(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # decode_segment refuses a missing key up front (segment_limits); without that check (an
    # error the checks do not foresee) the insert fails and halving finds the segment.
    monkeypatch.setattr(ingest_module, "check_rows", lambda table: None)
    deliver_all(store, bad=("run-2", 1))
    stats = Ingester(store).ingest_pending()
    assert (stats.segments, stats.rejected, stats.rows) == (23, 1, 46)
    assert stored(store) == [(r, s) for r in RUNS for s in SEQS if (r, s) != ("run-2", 1)]
    moved = store.layout.root / "rejected" / f"run-2-{store.layout.segment_path('run-2', 1).name}"
    assert moved.exists()
    reason = moved.with_suffix(".reason.txt").read_text()
    assert "could not be ingested" in reason and "NULL" in reason.upper()
    assert not list_segment_files(store.layout.inbox)


def test_a_segment_without_a_key_is_refused_before_insert(store: Store) -> None:
    deliver_all(store, bad=("run-2", 1))
    stats = Ingester(store).ingest_pending()
    assert (stats.segments, stats.rejected) == (23, 1)
    moved = store.layout.root / "rejected" / f"run-2-{store.layout.segment_path('run-2', 1).name}"
    assert "have no key" in moved.with_suffix(".reason.txt").read_text()


def test_a_run_failing_for_another_reason_waits_and_the_others_go_in(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ingest_module.evaluate_runs
    seen: list[list[str]] = []

    def failing_for_run_3(cur: object, runs: Sequence[RunBatch], *rest: object) -> object:
        seen.append([run.run_id for run in runs])
        if any(run.run_id == "run-3" for run in runs):
            raise RuntimeError("a bug that run-3's data triggers")
        return real(cur, runs, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module, "evaluate_runs", failing_for_run_3)
    deliver_all(store)
    stats = Ingester(store, max_batch_rows=10).ingest_pending()  # batches of 5 segments
    assert seen[0] == ["run-0", "run-1"]  # the first batch cuts across runs
    assert (stats.segments, stats.rejected) == (20, 0)
    assert [r for r, _ in stored(store)].count("run-3") == 0
    assert [(r, s) for r, s, _ in list_segment_files(store.layout.inbox)] == [
        ("run-3", s) for s in SEQS
    ]  # nothing rejected: an error that is not about the data is never blamed on it
    assert not (store.layout.root / "rejected").exists()

    monkeypatch.setattr(ingest_module, "evaluate_runs", real)  # the bug is fixed
    stats = Ingester(store).ingest_pending()
    assert (stats.segments, stats.duplicates) == (4, 0)
    assert stored(store) == [(r, s) for r in RUNS for s in SEQS]
