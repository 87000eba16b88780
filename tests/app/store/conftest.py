"""Fixtures of the store tests: one filled store per test session of this package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.app.store.filled_store import fill
from tests.support.dashboard_runs import ingest
from trainlight.app.store.database import Store


@pytest.fixture(scope="package")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, dict[str, str]]]:
    """The store of `filled_store.fill`, ingested; (store, run ids by role)."""
    root = tmp_path_factory.mktemp("series")
    runs = fill(root)
    store = ingest(root)
    try:
        yield store, runs
    finally:
        store.close()
