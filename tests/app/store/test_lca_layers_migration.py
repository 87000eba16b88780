"""Schema v5: the grid's LCA layer lights come from `lca_layers` (kept by ingest) and `latest`;
a store written before gets the layer order backfilled, once, from `layer_metrics`."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.app.store.test_grid_query import layer_segment
from tests.support.dashboard_runs import train_lca_mlp
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.migrations import MIGRATIONS, SCHEMA_VERSION
from trainlight.app.store.read.grid import LayerLight, grid_rows
from trainlight.collectors.schema import StoreLayout, write_atomically

# The grid's query before v5: a scan of every `lca` row.
OLD_LIGHTS = """SELECT run_id, layer, arg_max(value, step), min(rowid) AS first
                FROM layer_metrics WHERE key = 'lca'
                GROUP BY run_id, layer ORDER BY run_id, first"""


def lights(store: Store) -> dict[str, tuple[LayerLight, ...]]:
    with store.read() as cur:
        return {row.run_id: row.lca_layers for row in grid_rows(cur)}


def old_lights(store: Store) -> dict[str, tuple[LayerLight, ...]]:
    out: dict[str, list[LayerLight]] = {}
    with store.read() as cur:
        for run_id, layer, value, _ in cur.execute(OLD_LIGHTS).fetchall():
            out.setdefault(run_id, []).append(LayerLight(layer, value))
    return {run_id: tuple(found) for run_id, found in out.items()}


def fill(store: Store) -> list[str]:
    """A real LCA run, and one whose layers appear over three segments (one in each pass)."""
    mlp = train_lca_mlp(store.layout.root, "lca-mlp", steps=40)
    Ingester(store).ingest_pending()
    store.layout.run_inbox("late").mkdir(parents=True, exist_ok=True)
    for seq, layers in enumerate([["b.1"], ["b.1", "a.0"], ["c", "a.0", "b.1"]]):
        rows = [(seq, layer, "lca", seq - 1.0) for layer in layers]
        write_atomically(store.layout.segment_path("late", seq), layer_segment("late", seq, rows))
        Ingester(store).ingest_pending()
    return [mlp, "late"]


def make_v4_copy(source: Path, target: StoreLayout) -> None:
    """A store as trainlight wrote it before schema v5, with `source`'s runs and layer rows."""
    target.root.mkdir(parents=True)
    con = duckdb.connect(str(target.database))
    con.execute("CREATE TABLE schema_version(version INTEGER NOT NULL)")
    for version, statements in enumerate(MIGRATIONS[:4], start=1):
        for statement in statements:
            con.execute(statement)
        con.execute("INSERT INTO schema_version VALUES (?)", [version])
    con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
    for table in ("runs", "latest", "layer_metrics"):
        # columns added since v5 (runs.planned_steps: v7) are not in the old tables
        later = " EXCLUDE (planned_steps)" if table == "runs" else ""
        con.execute(f"INSERT INTO {table} SELECT *{later} FROM src.{table} ORDER BY rowid")
    con.close()


def test_lights_kept_at_ingest_match_the_old_scan_and_the_v5_backfill(tmp_path: Path) -> None:
    new = Store(StoreLayout.resolve(tmp_path / "new"))
    try:
        run_ids = fill(new)
        want = lights(new)
        assert want == old_lights(new)
    finally:
        new.close()
    assert [light.layer for light in want["late"]] == ["b.1", "a.0", "c"]
    assert [light.state for light in want["late"]] == ["hurting", "hurting", "hurting"]
    assert [light.layer for light in want[run_ids[0]]] == ["0", "2", "4"]  # model order

    old = StoreLayout.resolve(tmp_path / "old")
    make_v4_copy(new.layout.database, old)
    migrated = Store(old)
    try:
        assert migrated.schema_version == SCHEMA_VERSION >= 5
        assert lights(migrated) == want
    finally:
        migrated.close()
