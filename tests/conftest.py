"""Fixtures shared across test packages."""

from __future__ import annotations

import pytest

from tests.support.demo_store import QuickDemo, run_quick_demo


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> QuickDemo:
    """The quick demo's store, trained and ingested once per session (see demo_store.py)."""
    return run_quick_demo(tmp_path_factory.mktemp("demo") / "store")
