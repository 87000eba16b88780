"""Schema v4: a store written before the sparkline tables existed gets them backfilled, once,
with exactly the buckets ingest would have kept."""

from __future__ import annotations

import math
import random
from pathlib import Path

import duckdb

from tests.app.store.test_sparklines import Stored, assert_same_buckets, ingest, stored
from tests.support.trainings import train_diverging
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.migrations import MIGRATIONS, SCHEMA_VERSION
from trainlight.app.store.read.grid import grid_rows
from trainlight.collectors.schema import StoreLayout


def fill(store: Store) -> list[str]:
    """Runs of every kind through the real ingest path; their ids."""
    rng = random.Random(9)
    long_run = [(s, "loss", rng.gauss(10.0 / (s + 1), 0.01)) for s in range(7000)]
    long_run[300] = (300, "loss", math.nan)
    for seq, start in enumerate(range(0, 7000, 1000)):
        ingest(store, "long", seq, long_run[start : start + 1000])
    fallback = [(s, "runaway/distance", 1.0) for s in range(3)]
    fallback += [(s, k, float(s)) for s in range(400) for k in ("g_loss", "acc")]
    ingest(store, "fallback", 0, fallback)
    ingest(store, "reserved-only", 0, [(s, "lca/total", 1.0) for s in range(10)])
    ingest(store, "negative", 0, [(s, "loss", 1.0) for s in range(-500, 10)])
    diverging = train_diverging(store.layout.root, "diverging")
    Ingester(store).ingest_pending()
    return ["long", "fallback", "reserved-only", "negative", diverging]


def make_v3_copy(source: Path, target: StoreLayout) -> None:
    """A store as trainlight wrote it before schema v4 (the old DDL), holding `source`'s runs
    and metrics in their insertion order."""
    target.root.mkdir(parents=True)
    con = duckdb.connect(str(target.database))
    con.execute("CREATE TABLE schema_version(version INTEGER NOT NULL)")
    for version, statements in enumerate(MIGRATIONS[:3], start=1):
        for statement in statements:
            con.execute(statement)
        con.execute("INSERT INTO schema_version VALUES (?)", [version])
    con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
    con.execute("INSERT INTO runs SELECT * EXCLUDE (planned_steps) FROM src.runs")  # v7 column
    con.execute("INSERT INTO metrics SELECT * FROM src.metrics ORDER BY rowid")
    con.close()


def test_migrating_a_v3_store_backfills_the_buckets_ingest_keeps(tmp_path: Path) -> None:
    new = Store(StoreLayout.resolve(tmp_path / "new"))
    try:
        run_ids = fill(new)
        want: dict[str, Stored] = {r: stored(new, r) for r in run_ids}
        with new.read() as cur:
            want_rows = {r.run_id: r for r in grid_rows(cur)}
    finally:
        new.close()
    assert want["fallback"][:2] == ("g_loss", 2)
    assert want["reserved-only"][0] == ""  # no main key: no sparkline
    assert want["negative"][1] == 4  # 510 steps from -500

    old = StoreLayout.resolve(tmp_path / "old")
    make_v3_copy(new.layout.database, old)
    migrated = Store(old)
    try:
        assert migrated.schema_version == SCHEMA_VERSION >= 4
        for run_id in run_ids:
            assert_same_buckets(stored(migrated, run_id), want[run_id])
        with migrated.read() as cur:
            got_rows = {r.run_id: r for r in grid_rows(cur)}
    finally:
        migrated.close()
    for run_id in run_ids:
        got, exp = got_rows[run_id], want_rows[run_id]
        assert got.spark_key == exp.spark_key
        assert len(got.spark) == len(exp.spark)
        assert all(
            (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9)
            for a, b in zip(got.spark, exp.spark, strict=True)
        )
    reopened = Store(old)  # the backfill ran once: reopening changes nothing
    try:
        assert_same_buckets(stored(reopened, "long"), want["long"])
    finally:
        reopened.close()
