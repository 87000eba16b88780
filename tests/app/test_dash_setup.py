"""Dash's per-process setup is done when the app is created, not raced by first requests."""

from __future__ import annotations

import threading
from pathlib import Path

from trainlight.app.factory import create_app
from trainlight.app.store.database import Store
from trainlight.collectors.schema import StoreLayout


def test_concurrent_first_requests_all_succeed(tmp_path: Path) -> None:
    """Under load, two first requests ran Dash's setup hook at once and one got a 500."""
    store = Store(StoreLayout(tmp_path / "store"))
    try:
        app = create_app(store, token="t0ken")
        assert app._got_first_request["setup_server"]  # done before any client connects
        statuses: list[int] = []
        start = threading.Barrier(8)

        def first_request() -> None:
            start.wait(timeout=10)
            client = app.server.test_client()
            reply = client.get("/_dash-dependencies", headers={"Authorization": "Bearer t0ken"})
            statuses.append(reply.status_code)

        threads = [threading.Thread(target=first_request) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert statuses == [200] * 8
    finally:
        store.close()
