"""Health evaluated on ingest: history kept, auto-prune published, same result late or live."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.support.segments import metrics_segment
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.queries import list_runs
from trainlight.collectors.schema import StoreLayout, write_atomically

ROLES = {"adversary": "d_loss", "content": "content"}
FAST = {"confirm": 1, "catch_window": 10, "catch_patience": 40}


def gan_segments(run_id: str, prune_on: tuple[str, ...] = ()) -> list[bytes]:
    """20 segments of 10 steps: a frozen adversary, a content loss that flattens, then a NaN."""
    out = []
    for seq in range(20):
        rows = []
        for step in range(seq * 10, seq * 10 + 10):
            rows += [
                (step, "d_loss", 0.5 + 0.01 * (step % 3)),
                (step, "content", max(1.0, 5.0 - 0.2 * step)),
            ]
        if seq == 17:
            rows.append((175, "loss", math.nan))
        out.append(metrics_segment(run_id, seq, rows, roles=ROLES, health=FAST, prune_on=prune_on))
    return out


def drop(store: Store, run_id: str, seq: int, payload: bytes) -> None:
    store.layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
    write_atomically(store.layout.segment_path(run_id, seq), payload)


def health_rows(store: Store) -> list[tuple[str, str, int, str]]:
    with store.read() as cur:
        return cur.execute(
            "SELECT signal, state, step, reason FROM health ORDER BY rowid"
        ).fetchall()


def test_live_restarted_and_late_ingest_record_the_same_transitions(tmp_path: Path) -> None:
    segments = gan_segments("gan-1")
    live = Store(StoreLayout.resolve(tmp_path / "live"))
    for seq, payload in enumerate(segments):  # one pass per segment, restarting twice
        drop(live, "gan-1", seq, payload)
        Ingester(live).ingest_pending()
        if seq in (5, 12):
            live.close()
            live = Store(StoreLayout.resolve(tmp_path / "live"))
    late = Store(StoreLayout.resolve(tmp_path / "late"))
    for seq, payload in enumerate(segments):
        drop(late, "gan-1", seq, payload)
    Ingester(late).ingest_pending()  # everything in one pass, long after
    recorded = health_rows(live)
    assert recorded == health_rows(late)
    states = {(signal, state) for signal, state, _, _ in recorded}
    assert {
        ("catch", "amber"),
        ("catch", "red"),
        ("nonfinite", "green"),
        ("nonfinite", "red"),
    } <= states
    assert ("nonfinite", "red", 175, "loss = NaN at step 175") in recorded
    assert all(step is not None for _, _, step, _ in recorded)
    for store in (live, late):  # the current state is the latest change, even within a batch
        with store.read() as cur:
            (run,) = list_runs(cur, utc_naive())
        # spike: one NaN is the only `loss` reading (the nonfinite signal's business);
        # progress: judged on the segments' send times, the same live, restarted or late
        assert run.health == {
            "catch": "red",
            "nonfinite": "red",
            "spike": "grey",
            "progress": "green",
        }
    with live.read() as cur:
        marks = cur.execute("SELECT key, step FROM metrics WHERE key LIKE 'catch/%'").fetchall()
    assert [k for k, _ in marks] == ["catch/plateau_step"]
    live.close()
    late.close()


def test_auto_prune_requests_the_stop_and_publishes_it(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path))
    for seq, payload in enumerate(gan_segments("gan-2", prune_on=("nonfinite",))):
        drop(store, "gan-2", seq, payload)
    Ingester(store).ingest_pending()
    with store.read() as cur:
        stop_requested, reason = cur.execute(
            "SELECT stop_requested, stop_reason FROM runs"
        ).fetchone()
    assert stop_requested is True
    assert reason == "auto-pruned: nonfinite red: loss = NaN at step 175"
    control = json.loads(store.layout.control_path("gan-2").read_text())
    assert control == {"stop": True, "reason": reason}
    store.close()


def test_runs_without_prune_on_are_never_stopped_by_health(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path))
    for seq, payload in enumerate(gan_segments("gan-3")):
        drop(store, "gan-3", seq, payload)
    Ingester(store).ingest_pending()
    assert not store.layout.control_path("gan-3").exists()
    with store.read() as cur:
        assert cur.execute("SELECT stop_requested FROM runs").fetchone() == (False,)
    store.close()
