"""Rule states kept live between ingest passes give the verdicts that reloading them gives, also
when a pass is rolled back after the rules ran."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.support.segments import metrics_segment
from trainlight.app.store.database import Store
from trainlight.app.store.ingest import health as health_module
from trainlight.app.store.ingest.health import LiveHealth
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.health.registry import specs
from trainlight.collectors.schema import StoreLayout, write_atomically


def segments() -> list[bytes]:
    """A run whose loss turns NaN in its third segment, with runaway readings (a window that
    keeps its readings: feeding a segment twice would show in the saved state)."""
    out = []
    for seq in range(5):
        rows = [(s, "loss", 1.0 / (s + 1)) for s in range(seq * 10, seq * 10 + 10)]
        rows += [(seq * 10 + 9, "acc", 0.5)]
        for step in range(seq * 10, seq * 10 + 10, 2):  # readings the runaway window keeps
            rows += [(step, "runaway/distance", 0.5), (step, "runaway/critical", 0.1)]
            rows += [(step, "runaway/effect", 1.0)]
        if seq == 2:
            rows[5] = (rows[5][0], "loss", math.nan)
        status = "finished" if seq == 4 else "running"
        out.append(metrics_segment("r-1", seq, rows, status=status, sent_at=1000.0 + seq))
    return out


def ingest_one_by_one(store_dir: Path, fail_pass: int | None, monkeypatch: pytest.MonkeyPatch):
    store = Store(StoreLayout.resolve(store_dir))
    ingester = Ingester(store)
    real_write = health_module._write
    passes = 0

    def failing_write(cur, changes):  # type: ignore[no-untyped-def]
        if passes == fail_pass:
            raise RuntimeError("the disk went away after the rules ran")
        real_write(cur, changes)

    monkeypatch.setattr(health_module, "_write", failing_write)
    try:
        for seq, payload in enumerate(segments()):
            store.layout.run_inbox("r-1").mkdir(parents=True, exist_ok=True)
            write_atomically(store.layout.segment_path("r-1", seq), payload)
            ingester.ingest_pending()  # a failing pass holds the run; the next one retries
            passes += 1
        ingester.ingest_pending()
        with store.read() as cur:
            return cur.execute(
                """SELECT h.signal, h.state, h.step, h.reason, s.state FROM health h
                   JOIN health_state s USING (run_id) ORDER BY h.seq"""
            ).fetchall()
    finally:
        monkeypatch.setattr(health_module, "_write", real_write)
        store.close()


def test_a_rolled_back_pass_never_leaves_a_live_state_ahead_of_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = ingest_one_by_one(tmp_path / "clean", None, monkeypatch)
    timed = {spec.name for spec in specs() if spec.timed}
    on_steps = [(signal, state) for signal, state, *_ in clean if signal not in timed]
    assert on_steps[-1] == ("nonfinite", "red")
    for fail_pass in (1, 2, 3):
        assert ingest_one_by_one(tmp_path / f"fail-{fail_pass}", fail_pass, monkeypatch) == clean


def test_an_entry_is_used_once_and_only_for_the_state_it_was_saved_as() -> None:
    live = LiveHealth(capacity=2)
    outcome = health_module.HealthOutcome([], None, "saved-json", object())  # type: ignore[arg-type]
    live.keep({"a": outcome, "b": outcome, "c": outcome})
    assert live.take("a", "saved-json") is None  # evicted: the oldest beyond capacity
    assert live.take("b", "other-json") is None  # the database holds another state
    assert live.take("b", "saved-json") is None  # taken (and dropped) by the call before
    assert live.take("c", "saved-json") is outcome.health
