"""`trainlight import trackio`: a real trackio database, written by the trackio package in a
child process (its own TRACKIO_DIR, no dashboard, no network), imported with the CLI, ingested
and read back from DuckDB. Every logged number arrives once with its step, value and trackio's
timestamp, NaN/Inf included and judged red, config and group come along, the database is
never written to, importing again adds nothing, and a damaged row costs only its run."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing, redirect_stderr
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("trackio")

from tests.support.imported_store import comparable, counts, opened
from tests.support.server import running_server
from trainlight.app.cli import main
from trainlight.app.store.database import utc_naive
from trainlight.app.store.read.queries import RunSummary, get_run, list_runs
from trainlight.integrations.importers.command import ImportRequest, run_import

KEYS = {"train/loss", "val/loss", "extra/lr"}
AN_HOUR_AGO = time.time() - 3600

# Gradient descent on a linear least-squares problem, logged with trackio; at lr 1e4 the loss
# overflows to Inf by step 40. Any attempt to open an IP connection fails the script.
WRITER = textwrap.dedent(
    """
    import json, socket, sys
    real_connect = socket.socket.connect
    def no_network(sock, address, *rest):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"trackio tried to reach {address}")
        return real_connect(sock, address, *rest)
    socket.socket.connect = no_network
    import numpy as np
    import trackio

    def train(lr, steps=60):
        rng = np.random.default_rng(0)
        x, w = rng.standard_normal((320, 8)), rng.standard_normal(8)
        y = x @ w + 0.1 * rng.standard_normal(320)
        theta = np.zeros(8)
        for step in range(steps):
            idx = rng.integers(0, 256, 32)
            err = x[idx] @ theta - y[idx]
            loss = float(np.mean(err**2))
            theta = theta - lr * 2 * x[idx].T @ err / 32
            yield step, loss, float(np.mean((x[256:] @ theta - y[256:]) ** 2))

    logged = []
    np.seterr(all="ignore")
    for name, lr in (("healthy", 0.05), ("diverging", 1e4)):
        trackio.init(project="sweep", name=name, group="lrs", config={"lr": lr, "seed": 0},
                     embed=False, auto_log_cpu=False, auto_log_gpu=False)
        for step, loss, val in train(lr):
            metrics = {"train/loss": loss, "extra": {"lr": lr}, "note": "text"}
            if step % 3 == 0:
                metrics["val/loss"] = val
            trackio.log(metrics, step=step)
            logged += [[name, step, "train/loss", loss], [name, step, "extra/lr", lr]]
            if step % 3 == 0:
                logged.append([name, step, "val/loss", val])
        trackio.finish()
    json.dump(logged, open(sys.argv[1], "w"))
    """
)


@dataclass(frozen=True)
class Written:
    db: Path
    logged: list[tuple[str, int, str, object]]  # (run, step, key, value) as trackio was given


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    root = tmp_path_factory.mktemp("trackio")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKIO_", "HF_"))}
    env |= {"TRACKIO_DIR": str(root / "trackio"), "HF_HOME": str(root / "hf")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    script = root / "write.py"
    script.write_text(WRITER)
    done = subprocess.run(
        [sys.executable, str(script), str(root / "logged.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    logged = json.loads((root / "logged.json").read_text())
    expected = [(run, step, key, comparable(value)) for run, step, key, value in logged]
    return Written(root / "trackio" / "sweep.db", expected)


def copy_db(db: Path, to: Path) -> Path:
    """The database (and its write-ahead log, if any) under `to`, aged an hour."""
    to.mkdir(parents=True, exist_ok=True)
    for path in db.parent.glob(f"{db.name}*"):
        shutil.copy(path, to / path.name)
        os.utime(to / path.name, (AN_HOUR_AGO, AN_HOUR_AGO))
    return to / db.name


def trackio_times(db: Path) -> dict[tuple[str, int], int]:
    """(run, step) -> the row's timestamp in µs since the epoch, exactly as trackio wrote it."""
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as con:
        rows = con.execute("SELECT run_name, step, timestamp FROM metrics").fetchall()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return {
        (run, step): (datetime.fromisoformat(ts) - epoch) // timedelta(microseconds=1)
        for run, step, ts in rows
    }


def stored(store_dir: Path) -> tuple[list[tuple[str, int, str, object, int]], list[RunSummary]]:
    """(run name, step, key, value, wall time in µs) of the imported keys' rows; the runs."""
    with opened(store_dir) as store, store.read() as cur:
        rows = cur.execute(
            """SELECT r.name, m.step, m.key, m.value, epoch_us(m.wall_time)
               FROM metrics m JOIN runs r USING (run_id)"""
        ).fetchall()
        runs = list_runs(cur, utc_naive())
    events = sorted((n, s, k, comparable(v), us) for n, s, k, v, us in rows if k in KEYS)
    return events, runs


def digest(db: Path) -> dict[str, tuple[str, float]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in db.parent.glob(f"{db.name}*")
    }


def test_every_logged_number_arrives_once_and_the_database_is_left_alone(
    written: Written, tmp_path: Path
) -> None:
    db = copy_db(written.db, tmp_path / "logs")
    before = digest(db)
    store = tmp_path / "store"
    with redirect_stderr(io.StringIO()) as report:
        assert main(["import", "trackio", str(db), "--dir", str(store)]) == 0
    assert digest(db) == before  # opened read-only: not a byte, not an mtime changed
    lines = report.getvalue().splitlines()
    assert [line.split(" (")[0].strip() for line in lines[:-1]] == ["healthy", "diverging"]
    assert lines[-1] == f"imported 2 run(s), 280 events, 2 chunk(s) into {store}"
    assert main(["ingest", "--dir", str(store)]) == 0
    events, runs = stored(store)
    times = trackio_times(db)
    expected = sorted(
        (run, step, key, value, times[run, step]) for run, step, key, value in written.logged
    )
    assert events == expected
    assert {r.name for r in runs} == {"healthy", "diverging"}
    for run in runs:
        assert (run.project, run.group, run.tags, run.status) == (
            "sweep",
            "lrs",
            ("trackio",),
            "finished",
        )
        with opened(store) as opened_store, opened_store.read() as cur:
            detail = get_run(cur, run.run_id, utc_naive())
        assert detail is not None
        assert detail.config == {"lr": 0.05 if run.name == "healthy" else 1e4, "seed": 0}
    health = {r.name: r.health for r in runs}
    assert health["diverging"]["nonfinite"] == "red"
    assert "red" not in health["healthy"].values(), health["healthy"]
    assert health["healthy"]["spike"] != "grey"  # `train/loss` recognised as the main loss

    again = counts(store)
    assert main(["import", "trackio", str(db), "--dir", str(store), "--quiet"]) == 0
    assert main(["ingest", "--dir", str(store)]) == 0
    assert counts(store) == again


def test_a_damaged_row_costs_only_its_run_and_a_non_database_is_refused(
    written: Written, tmp_path: Path
) -> None:
    db = copy_db(written.db, tmp_path / "logs")
    with closing(sqlite3.connect(db)) as con, con:
        con.execute(
            """UPDATE metrics SET metrics = '{"train/loss": 1.0,' WHERE id =
               (SELECT min(id) + 5 FROM metrics WHERE run_name = 'diverging')"""
        )
    os.utime(db, (AN_HOUR_AGO, AN_HOUR_AGO))
    store = tmp_path / "store"
    with redirect_stderr(io.StringIO()) as report:
        assert main(["import", "trackio", str(db), "--dir", str(store)]) == 1
    lines = [line.strip() for line in report.getvalue().splitlines()]
    (failed,) = [line for line in lines if "FAILED" in line]
    assert failed.startswith("diverging: FAILED: metrics row ")
    assert lines[-1].endswith("; 1 run(s) failed")
    assert main(["ingest", "--dir", str(store)]) == 0
    _, runs = stored(store)
    assert [r.name for r in runs] == ["healthy"]

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all " * 100)
    with redirect_stderr(io.StringIO()) as report:
        assert main(["import", "trackio", str(garbage), "--dir", str(store)]) == 1
    assert report.getvalue().splitlines()[0] == (
        f"trainlight import trackio: {garbage}: not a readable SQLite database "
        "(file is not a database)"
    )


def test_a_database_still_being_written_is_imported_in_whole_chunks(
    written: Written, tmp_path: Path
) -> None:
    db = copy_db(written.db, tmp_path / "logs")
    os.utime(db, None)  # written just now: may still be growing
    store = tmp_path / "store"
    request = ImportRequest("trackio", db, directory=str(store), chunk_events=9)
    assert run_import(request, out=io.StringIO()) == 0
    assert main(["ingest", "--dir", str(store)]) == 0
    events, runs = stored(store)
    assert {r.status for r in runs} == {"running"}
    for name in ("healthy", "diverging"):
        assert len([e for e in events if e[0] == name]) == 140 // 9 * 9
    os.utime(db, (AN_HOUR_AGO, AN_HOUR_AGO))
    assert run_import(request, out=io.StringIO()) == 0
    assert main(["ingest", "--dir", str(store)]) == 0
    events, runs = stored(store)
    assert {r.status for r in runs} == {"finished"}
    assert len(events) == len(written.logged) == 280
    assert len(set(events)) == len(events)


def test_a_server_takes_the_import_over_http_and_once_only(
    written: Written, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--store URL`: the collectors' HTTP transport, its outbox in tmp; twice adds nothing."""
    monkeypatch.setenv("TRAINLIGHT_OUTBOX", str(tmp_path / "outbox"))
    db = copy_db(written.db, tmp_path / "logs")
    store = tmp_path / "store"
    with running_server(store) as server:
        command = ["import", "trackio", str(db), "--store", server.base_url, "--quiet"]
        for _ in range(2):
            assert main(command) == 0
            server.wait_for(
                lambda: (
                    {r["status"] for r in server.runs()} == {"finished"}
                    and not list((store / "inbox").rglob("*.parquet"))
                ),
                timeout_s=30,
                what="both runs ingested and finished",
            )
    assert not list((tmp_path / "outbox").rglob("*.parquet"))  # all acknowledged
    events, runs = stored(store)
    assert {r.name for r in runs} == {"healthy", "diverging"}
    assert len(events) == len(set(events)) == 280
    runs_count, _, segments = counts(store)
    assert (runs_count, segments) == (2, 2)  # the second import's segments were skipped
