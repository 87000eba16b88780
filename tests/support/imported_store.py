"""Reading an importer's result back: the store opened in the test's process (no server runs),
its row counts (re-imports must add none), NaN made comparable."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trainlight.app.store.database import Store
from trainlight.collectors.schema import StoreLayout


def comparable(value: float) -> object:
    """NaN != NaN: a stand-in that compares equal to itself."""
    return "nan" if math.isnan(value) else value


@contextmanager
def opened(store_dir: Path) -> Iterator[Store]:
    store = Store(StoreLayout.resolve(store_dir))
    try:
        yield store
    finally:
        store.close()


def counts(store_dir: Path) -> tuple[int, int, int]:
    """(runs, metric rows, segments) in the store."""
    with opened(store_dir) as store, store.read() as cur:
        row = cur.execute(
            "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM metrics), "
            "(SELECT count(*) FROM segments)"
        ).fetchone()
    assert row is not None
    return row
