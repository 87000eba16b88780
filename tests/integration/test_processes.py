"""Real trainers and a real server as a user runs them: exactly once, across kills."""

from __future__ import annotations

import signal
import time
from datetime import UTC
from pathlib import Path

import duckdb
import pytest
import requests

from tests.support.processes import Trainer, free_port
from tests.support.server import running_server, start_server, stop_server, wait_until

pytestmark = pytest.mark.slow
KEYS_PER_STEP = 3  # loss, step_copy, tensor_loss


def store_rows(store: Path, run_id: str) -> tuple[int, int, int | None]:
    """(rows, distinct (step, key) rows, max step) of the values a run logged (the collector's
    own `trainlight/problems` counters left out), read with plain DuckDB SQL."""
    con = duckdb.connect(str(store / "trainlight.duckdb"), read_only=True)
    try:
        row = con.execute(
            """SELECT count(*), count(DISTINCT (step, key)), max(step)
               FROM metrics WHERE run_id = ? AND NOT starts_with(key, 'trainlight/')""",
            [run_id],
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0]), int(row[1]), row[2]


def run_status(store: Path, run_id: str) -> str:
    con = duckdb.connect(str(store / "trainlight.duckdb"), read_only=True)
    try:
        row = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


def inbox_empty(store: Path) -> bool:
    return not any((store / "inbox").glob("*/*.parquet"))


def test_two_trainers_concurrently_every_row_exactly_once(tmp_path: Path) -> None:
    steps = 20_000
    with running_server(tmp_path) as server:
        trainers = [
            Trainer(
                [
                    "--store",
                    str(tmp_path),
                    "--run",
                    f"concurrent {i}",
                    "--steps",
                    str(steps),
                    "--progress-every",
                    "5000",
                ]
            )
            for i in range(2)
        ]
        run_ids = [t.line_starting("run_id ") for t in trainers]
        for trainer in trainers:
            assert trainer.wait(timeout=240) == 0, trainer.stderr

        def all_finished() -> bool:
            runs = {r["run_id"]: r for r in server.runs()}
            return inbox_empty(tmp_path) and all(
                runs.get(rid, {}).get("status") == "finished" for rid in run_ids
            )

        wait_until(all_finished, 60, what="both runs ingested and finished")
        listed = {r["run_id"]: r for r in server.runs()}
        assert all(listed[rid]["last_step"] == steps - 1 for rid in run_ids)
    for run_id in run_ids:
        assert store_rows(tmp_path, run_id) == (
            steps * KEYS_PER_STEP,
            steps * KEYS_PER_STEP,
            steps - 1,
        )


def test_kill_9_trainer_loses_at_most_one_flush_interval(tmp_path: Path) -> None:
    flush = 0.5
    with running_server(tmp_path) as server:
        trainer = Trainer(
            [
                "--store",
                str(tmp_path),
                "--run",
                "doomed",
                "--steps",
                "1000000",
                "--step-sleep",
                "0.001",
                "--flush-interval",
                str(flush),
                "--progress-every",
                "50",
            ]
        )
        run_id = trainer.line_starting("run_id ")
        trainer.line_starting("progress 2000 ")  # a few flushes have happened
        trainer.kill()
        killed_at = time.time()
        wait_until(
            lambda: (server.run(run_id) or {}).get("status") in ("crashed", "stale"),
            timeout_s=30,
            what="the killed run to be marked crashed",
        )
        wait_until(lambda: inbox_empty(tmp_path), 30, what="inbox drained")
    con = duckdb.connect(str(tmp_path / "trainlight.duckdb"), read_only=True)
    try:
        row = con.execute(
            "SELECT max(wall_time), count(*), count(DISTINCT (step, key)), max(step) "
            "FROM metrics WHERE run_id = ?",
            [run_id],
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    last_wall, rows, distinct, max_step = row
    assert rows == distinct == (max_step + 1) * KEYS_PER_STEP  # a gap-free prefix, no duplicate

    missing_s = killed_at - last_wall.replace(tzinfo=UTC).timestamp()
    assert missing_s <= flush + 0.25, f"lost the last {missing_s:.2f}s of rows"
    assert run_status(tmp_path, run_id) == "crashed"


def test_kill_9_server_mid_ingest_then_restart_no_loss_no_duplicate(tmp_path: Path) -> None:
    steps = 60_000
    server = start_server(tmp_path, tmp_path.parent / f"{tmp_path.name}-serve.log")
    try:
        trainer = Trainer(
            [
                "--store",
                str(tmp_path),
                "--run",
                "survivor",
                "--steps",
                str(steps),
                "--flush-interval",
                "0.2",
                "--progress-every",
                "10000",
            ]
        )
        run_id = trainer.line_starting("run_id ")
        trainer.line_starting("progress 20000 ")
        server.process.send_signal(signal.SIGKILL)  # mid-ingest: segments keep arriving
        server.process.wait(timeout=30)
        assert trainer.wait(timeout=240) == 0
    finally:
        stop_server(server)
    with running_server(tmp_path) as restarted:
        wait_until(
            lambda: (
                inbox_empty(tmp_path) and (restarted.run(run_id) or {}).get("status") == "finished"
            ),
            timeout_s=60,
            what="restarted server to ingest the rest",
        )
    assert store_rows(tmp_path, run_id) == (steps * KEYS_PER_STEP, steps * KEYS_PER_STEP, steps - 1)


def test_http_transport_keeps_outbox_until_server_is_back(tmp_path: Path) -> None:
    store, outbox = tmp_path / "store", tmp_path / "outbox"
    port = free_port()
    steps = 3000
    trainer = Trainer(
        [
            "--store",
            f"http://127.0.0.1:{port}",
            "--run",
            "remote",
            "--steps",
            str(steps),
            "--step-sleep",
            "0.001",
            "--flush-interval",
            "0.2",
            "--progress-every",
            "500",
        ],
        env={"TRAINLIGHT_OUTBOX": str(outbox)},
    )
    run_id = trainer.line_starting("run_id ")
    trainer.line_starting("progress 500 ")
    assert list(outbox.glob(f"{run_id}/*.parquet")), "segments must wait in the outbox"
    with running_server(store, port=port) as server:
        assert trainer.wait(timeout=120) == 0
        # said once, not once per retry
        assert trainer.stderr.count("cannot reach the trainlight server") == 1
        wait_until(
            lambda: (server.run(run_id) or {}).get("status") == "finished",
            timeout_s=60,
            what="remote run ingested",
        )
        wait_until(lambda: inbox_empty(store), 30, what="server inbox drained")
    assert not list(outbox.glob(f"{run_id}/*.parquet")), "acknowledged segments leave the outbox"
    assert store_rows(store, run_id) == (steps * KEYS_PER_STEP, steps * KEYS_PER_STEP, steps - 1)


@pytest.mark.parametrize("transport", ["inbox", "http"])
def test_stop_request_reaches_trainer_within_two_flush_intervals(
    tmp_path: Path, transport: str
) -> None:
    flush = 0.5
    with running_server(tmp_path / "store") as server:
        store = str(tmp_path / "store") if transport == "inbox" else server.base_url
        trainer = Trainer(
            [
                "--store",
                store,
                "--run",
                f"stop me ({transport})",
                "--steps",
                "10000000",
                "--step-sleep",
                "0.001",
                "--flush-interval",
                str(flush),
                "--progress-every",
                "1000000",
            ],
            env={"TRAINLIGHT_OUTBOX": str(tmp_path / "outbox")},
        )
        run_id = trainer.line_starting("run_id ")
        wait_until(lambda: server.run(run_id) is not None, 30, what="run ingested")
        reply = requests.post(
            server.url(f"api/v1/runs/{run_id}/stop"), json={"reason": "doomed: test"}, timeout=10
        )
        requested_at = time.time()
        assert reply.status_code == 200 and reply.json()["stop"] is True
        stopped_at = float(trainer.line_starting("stopped ", timeout=30).split()[1])
        assert trainer.wait(timeout=60) == 0
        assert stopped_at - requested_at <= 2 * flush
        wait_until(
            lambda: (server.run(run_id) or {}).get("status") == "stopped",
            timeout_s=30,
            what="run recorded as stopped",
        )
        assert (server.run(run_id) or {})["stop_reason"] == "doomed: test"
