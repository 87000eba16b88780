"""The demo's dashboard is the real `trainlight serve`: started, polled for badges, stopped."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.server import wait_until
from tests.support.trainings import train_diverging
from trainlight.demo.dashboard import DashboardError, fetch_health, start_dashboard

pytestmark = pytest.mark.slow


def test_the_dashboard_ingests_and_reports_badges_then_stops(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_id = train_diverging(store, "diverges")
    dashboard = start_dashboard(store, "127.0.0.1", 0, tmp_path / "serve.log")
    try:
        assert dashboard.url.startswith("http://127.0.0.1:") and dashboard.url.endswith("/")
        health = wait_until(
            lambda: fetch_health(dashboard.url).get(run_id), 30, what="the run's badges"
        )
        assert health["nonfinite"] == "red"
    finally:
        code = dashboard.stop()
    assert code == 0
    assert fetch_health(dashboard.url, timeout=0.5) == {}  # gone: no answer, no exception


def test_a_port_in_use_is_reported_not_hung(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DashboardError, match="the dashboard exited with code"):
            start_dashboard(tmp_path / "store", "127.0.0.1", port, tmp_path / "serve.log")
    assert "address already in use" in (tmp_path / "serve.log").read_text().lower()
