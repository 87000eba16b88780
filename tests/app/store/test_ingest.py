from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.support.segments import metrics_segment
from trainlight.app.store.control import request_stop
from trainlight.app.store.database import Store, StoreCorruptError, StoreLockedError, utc_naive
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.ingest.transaction import (
    IngestResult,
    Segment,
    SegmentError,
    decode_segment,
    ingest_segments,
)
from trainlight.app.store.read.queries import get_run, list_runs
from trainlight.collectors.schema import StoreLayout, write_atomically


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store(StoreLayout.resolve(tmp_path))
    yield opened
    opened.close()


def ingest(store: Store, segment: Segment) -> IngestResult:
    return ingest_segments(store, [segment])


def count(store: Store, sql: str, *params: object) -> int:
    with store.read() as cur:
        row = cur.execute(sql, list(params)).fetchone()
    assert row is not None
    return int(row[0])


def test_same_segment_twice_is_ingested_once(store: Store) -> None:
    segment = decode_segment(metrics_segment("r-1", 0, [(0, "loss", 1.0), (1, "loss", 0.5)]))
    first = ingest(store, segment)
    second = ingest(store, segment)
    assert (first.seqs, first.rows, first.duplicates) == ((0,), 2, 0)
    assert (second.seqs, second.rows, second.duplicates) == ((), 0, 1)
    assert count(store, "SELECT count(*) FROM metrics") == 2
    assert count(store, "SELECT count(*) FROM segments") == 1


def test_a_batch_skips_only_the_segments_seen_before(store: Store) -> None:
    segments = [
        decode_segment(metrics_segment("r-1", seq, [(seq, "loss", 1.0)])) for seq in range(4)
    ]
    ingest(store, segments[1])
    result = ingest_segments(store, segments)
    assert (result.seqs, result.rows, result.duplicates) == ((0, 2, 3), 3, 1)
    assert count(store, "SELECT count(*) FROM metrics") == 4
    assert count(store, "SELECT count(DISTINCT seq) FROM segments") == 4


def test_a_batch_must_hold_one_run(store: Store) -> None:
    with pytest.raises(ValueError, match="one run"):
        ingest_segments(store, [decode_segment(metrics_segment(r, 0, [])) for r in ("a-1", "b-1")])


def test_latest_keeps_the_newest_step_even_when_segments_arrive_out_of_order(store: Store) -> None:
    ingest(store, decode_segment(metrics_segment("r-1", 1, [(10, "loss", 0.1)])))
    ingest(
        store, decode_segment(metrics_segment("r-1", 0, [(5, "loss", 0.9), (6, "acc", math.nan)]))
    )
    with store.read() as cur:
        latest = dict(cur.execute("SELECT key, value FROM latest").fetchall())
        (run,) = list_runs(cur, utc_naive())
    assert latest["loss"] == 0.1 and math.isnan(latest["acc"])
    assert run.last_step == 10


def test_a_late_running_segment_never_reopens_a_finished_run(store: Store) -> None:
    ingest(store, decode_segment(metrics_segment("r-1", 1, [], status="finished")))
    ingest(store, decode_segment(metrics_segment("r-1", 0, [(1, "loss", 1.0)])))
    with store.read() as cur:
        (run,) = list_runs(cur, utc_naive())
    assert run.status == "finished"


def test_hostile_names_and_config_are_stored_verbatim(store: Store) -> None:
    name = '\'; DROP TABLE runs; -- "../.." 🚀'
    config = {"q": "it's", "nan": float("nan"), "path": "../../etc"}
    ingest(
        store,
        decode_segment(
            metrics_segment(
                "r-1",
                0,
                [(0, "lo'ss", 1.0)],
                name=name,
                project="p/../q",
                tags=("a'b",),
                config=config,
            )
        ),
    )
    with store.read() as cur:
        detail = get_run(cur, "r-1", utc_naive())
    assert detail is not None
    assert detail.summary.name == name and detail.summary.project == "p/../q"
    assert detail.summary.tags == ("a'b",)
    assert detail.config == {"q": "it's", "nan": "NaN", "path": "../../etc"}
    assert detail.summary.last_values == {"lo'ss": 1.0}


def test_silent_running_run_is_shown_stale(store: Store) -> None:
    ingest(store, decode_segment(metrics_segment("r-1", 0, [], sent_at=1_000_000.0)))
    with store.read() as cur:
        (run,) = list_runs(cur, utc_naive())
    assert run.status == "stale"


@pytest.mark.parametrize("payload", [b"", b"garbage", b"PAR1" + b"\0" * 64])
def test_garbage_is_refused_with_a_reason(payload: bytes) -> None:
    with pytest.raises(SegmentError, match="Parquet"):
        decode_segment(payload)


def test_ingester_moves_malformed_files_aside_and_continues(store: Store) -> None:
    layout = store.layout
    (layout.inbox / "r-1").mkdir(parents=True)
    write_atomically(layout.segment_path("r-1", 0), b"not parquet")
    write_atomically(layout.segment_path("r-1", 1), metrics_segment("r-1", 1, [(0, "x", 1.0)]))
    (layout.inbox / "r-2").mkdir()
    # A valid segment whose header disagrees with where it was found.
    write_atomically(layout.segment_path("r-2", 0), metrics_segment("r-1", 5, [(0, "x", 1.0)]))
    stats = Ingester(store).ingest_pending()
    assert (stats.segments, stats.rows, stats.rejected) == (1, 1, 2)
    rejected = sorted(p.name for p in (layout.root / "rejected").iterdir())
    assert len(rejected) == 4  # two segments, each with its .reason.txt
    assert not list(layout.inbox.glob("*/*.parquet"))


def test_ingester_ends_runs_of_dead_local_processes_crashed_or_stopped_if_asked_to(
    store: Store,
) -> None:
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    ingester = Ingester(store, namespace="boot-1:4026531836")
    ingest(
        store,
        decode_segment(metrics_segment("r-1", 0, [], pid_namespace="boot-1:4026531836", pid=pid)),
    )
    ingest(
        store, decode_segment(metrics_segment("r-2", 0, [], pid_namespace="boot-1:other", pid=pid))
    )
    ingest(
        store,
        decode_segment(metrics_segment("r-3", 0, [], pid_namespace="boot-1:4026531836", pid=pid)),
    )
    assert request_stop(store, "r-3", "auto-pruned: spike red")  # then its process went away
    assert ingester.sweep_liveness() == ["r-1", "r-3"]
    with store.read() as cur:
        rows = cur.execute("SELECT run_id, status, stop_reason FROM runs").fetchall()
    ended = {run_id: (status, reason) for run_id, status, reason in rows}
    assert ended == {
        "r-1": ("crashed", f"process {pid} exited without closing the run"),
        "r-2": ("running", ""),
        "r-3": ("stopped", "auto-pruned: spike red"),
    }


def test_second_process_gets_a_clear_error_while_the_store_is_open(store: Store) -> None:
    import subprocess
    import sys

    code = (
        "from trainlight.app.store.database import Store\n"
        "from trainlight.collectors.schema import StoreLayout\n"
        f"Store(StoreLayout.resolve({str(store.layout.root)!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert StoreLockedError.__name__ in result.stderr and "only one" in result.stderr.lower()


@pytest.mark.parametrize("content", [b"", b"\x00" * 4096, b"not a database " * 500])
def test_a_corrupt_database_is_reported_as_corrupt_not_as_locked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    from trainlight.app.cli import main

    layout = StoreLayout.resolve(tmp_path / "store")
    layout.root.mkdir(parents=True)
    layout.database.write_bytes(content)
    with pytest.raises(StoreCorruptError, match="corrupt"):
        Store(layout)
    assert main(["runs", "--dir", str(layout.root)]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "another process" not in err
    assert layout.database.read_bytes() == content  # reported, never overwritten


@pytest.mark.parametrize("ahead_s", [3600.0, 10 * 365 * 86400.0])
def test_a_heartbeat_from_the_future_does_not_pin_a_run_as_running(
    store: Store, ahead_s: float
) -> None:
    import time
    from datetime import timedelta

    before = utc_naive()
    store.layout.run_inbox("r-1").mkdir(parents=True)
    segment = metrics_segment("r-1", 0, [(0, "x", 1.0)], sent_at=time.time() + ahead_s)
    write_atomically(store.layout.segment_path("r-1", 0), segment)
    Ingester(store).ingest_pending()
    with store.read() as cur:
        (updated,) = cur.execute("SELECT updated_at FROM runs WHERE run_id = 'r-1'").fetchone()
        assert before <= updated <= utc_naive()  # clamped to the server's clock
        stale = timedelta(seconds=30)
        later = list_runs(cur, utc_naive() + stale + timedelta(seconds=1), stale)
    assert [run.status for run in later] == ["stale"]
