"""`cache.cached_read`: served from the cache until the store's data version moves."""

from __future__ import annotations

from pathlib import Path

import duckdb
from flask import Flask

from trainlight.app.cache import cached_read, create_cache
from trainlight.app.store.database import Store
from trainlight.collectors.schema import StoreLayout


def test_cached_until_a_write_bumps_the_data_version(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path))
    cache = create_cache(Flask(__name__))
    calls: list[int] = []

    def count_runs(cur: duckdb.DuckDBPyConnection, label: str) -> tuple[str, int]:
        calls.append(1)
        row = cur.execute("SELECT count(*) FROM runs").fetchone()
        assert row is not None
        return label, int(row[0])

    try:
        assert cached_read(cache, store, "n", count_runs, "x") == ("x", 0)
        assert cached_read(cache, store, "n", count_runs, "x") == ("x", 0)
        assert len(calls) == 1
        assert cached_read(cache, store, "n", count_runs, "y") == ("y", 0)  # args are in the key
        assert len(calls) == 2
        with store.write() as cur:
            cur.execute("INSERT INTO runs (run_id, name) VALUES ('r-1', 'one')")
        assert cached_read(cache, store, "n", count_runs, "x") == ("x", 1)
        assert len(calls) == 3
    finally:
        store.close()
