"""`cache.cached_read`: served from the cache until the store's data version moves."""

from __future__ import annotations

from pathlib import Path

import duckdb
from flask import Flask

from trainlight.app.cache import cached_read, cached_update, create_cache
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


def test_a_hit_is_a_copy_unless_the_value_is_shared(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path))
    cache = create_cache(Flask(__name__))

    def rows(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
        return [("runs", int(cur.execute("SELECT count(*) FROM runs").fetchone()[0]))]  # type: ignore[index]

    try:
        first = cached_read(cache, store, "copied", rows)
        again = cached_read(cache, store, "copied", rows)
        assert again == first and again is not first  # pickled: callers may not share it
        first_shared = cached_read(cache, store, "shared", rows, shared=True)
        assert cached_read(cache, store, "shared", rows, shared=True) is first_shared
        with store.write() as cur:
            cur.execute("INSERT INTO runs (run_id, name) VALUES ('r-1', 'one')")
        assert cached_read(cache, store, "shared", rows, shared=True) == [("runs", 1)]
    finally:
        store.close()


def test_cached_update_hands_compute_the_last_value(tmp_path: Path) -> None:
    store = Store(StoreLayout.resolve(tmp_path))
    cache = create_cache(Flask(__name__))
    seen: list[tuple[int, ...] | None] = []

    def grow(cur: duckdb.DuckDBPyConnection, last: tuple[int, ...] | None) -> tuple[int, ...]:
        seen.append(last)
        n = int(cur.execute("SELECT count(*) FROM runs").fetchone()[0])  # type: ignore[index]
        return (*(last or ()), n)

    try:
        first = cached_update(cache, store, "g", grow)
        assert first == (0,) and cached_update(cache, store, "g", grow) is first
        with store.write() as cur:
            cur.execute("INSERT INTO runs (run_id, name) VALUES ('r-1', 'one')")
        assert cached_update(cache, store, "g", grow) == (0, 1)
        assert seen == [None, (0,)]  # computed twice; the second time from the first value
        cache.clear()  # the last value expired too: compute starts from nothing
        assert cached_update(cache, store, "g", grow) == (1,)
    finally:
        store.close()
