"""`/` (the grid) in a real Chromium against a real `trainlight serve`, fed by real `Monitor` runs.

Runs are written by the public collector API in this process (a tiny torch regression), ingested
by the server subprocess, and read back through the API and the page. Run names are hostile on
purpose (quotes, path traversal, SQL, markup, emoji): they must come back verbatim as text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
from playwright.sync_api import Dialog, expect

from trainlight.collectors import Monitor

if TYPE_CHECKING:  # fixtures come from conftest.py; only their types are imported
    from tests.browser.conftest import WatchedPage
    from tests.support.server import LiveServer

pytestmark = pytest.mark.browser

RUN_NAMES = (
    "plain baseline",
    "quote \"double\" and 'single'",
    "../../etc/passwd",
    "'; DROP TABLE runs; --",
    "<b>bold</b><script>window.__pwned = 1</script>",
    "emoji 🔥 run 🚀",
)
STEPS = 300
INGEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WrittenRun:
    """What the test process logged for one run, to compare with what the server shows."""

    run_id: str
    name: str
    last_step: int
    last_values: dict[str, float]


def train_and_log(name: str, store_dir: Path, seed: int) -> WrittenRun:
    """A tiny linear regression with SGD, logged through Monitor; closed as finished."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(64, 4, generator=generator)
    targets = inputs @ torch.randn(4, 1, generator=generator)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    last: dict[str, float] = {}
    monitor = Monitor(run=name, project="browser-tests", store=store_dir, flush_interval=0.2)
    with monitor:
        for step in range(STEPS):
            lr = 0.05 * (1 - step / STEPS)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
            monitor.log(step, loss=loss, grad_norm=grad_norm, lr=lr)
            optimizer.step()
            last = {"loss": loss.item(), "grad_norm": grad_norm.item(), "lr": lr}
    assert monitor.problems.snapshot() == {}, monitor.problems.snapshot()
    return WrittenRun(monitor.run_id, name, STEPS - 1, last)


@pytest.fixture(scope="module")
def written_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[WrittenRun]]:
    store_dir = tmp_path_factory.mktemp("runs-page") / "store"
    runs = [train_and_log(name, store_dir, seed) for seed, name in enumerate(RUN_NAMES)]
    return store_dir, runs


@pytest.fixture(scope="module")
def server(
    written_runs: tuple[Path, list[WrittenRun]], serve_store: Callable[[Path], LiveServer]
) -> Iterator[LiveServer]:
    store_dir, runs = written_runs
    live = serve_store(store_dir)
    expected = {r.run_id: r.last_step for r in runs}

    def all_ingested() -> bool:
        found = live.http.get(live.url("api/v1/runs"), timeout=5).json()["runs"]
        done = {r["run_id"]: r["last_step"] for r in found if r["status"] == "finished"}
        return done == expected

    live.wait_for(all_ingested, INGEST_TIMEOUT_S, what="every run ingested as finished")
    yield live


def api_runs(server: LiveServer) -> dict[str, dict[str, Any]]:
    response = server.http.get(server.url("api/v1/runs"), timeout=5)
    assert response.status_code == 200, response.text
    return {r["run_id"]: r for r in response.json()["runs"]}


def test_api_lists_runs_verbatim(
    server: LiveServer, written_runs: tuple[Path, list[WrittenRun]]
) -> None:
    listed = api_runs(server)
    for run in written_runs[1]:
        got = listed[run.run_id]
        assert got["name"] == run.name
        assert got["status"] == "finished"
        assert got["last_step"] == run.last_step
        assert got["last_values"] == pytest.approx(run.last_values, rel=1e-12)


def test_grid_shows_every_run_verbatim(
    server: LiveServer,
    written_runs: tuple[Path, list[WrittenRun]],
    watched_page: WatchedPage,
    screenshot_dir: Path,
) -> None:
    runs = written_runs[1]
    page = watched_page.page
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(server.url("?sort=name"), wait_until="domcontentloaded")

    names = page.locator(".ag-center-cols-container a.run-link")
    expect(names).to_have_count(len(runs))
    assert sorted(names.all_text_contents()) == sorted(RUN_NAMES)
    for run in runs:
        row = page.locator(f'.ag-center-cols-container .ag-row[row-id="{run.run_id}"]')
        expect(row).to_have_count(1)
        expect(row.locator("a.run-link")).to_have_text(run.name)
        assert row.locator("a.run-link").get_attribute("href") == f"/run/{run.run_id}"
        expect(row.locator('[col-id="status"]')).to_have_text("finished")
        expect(row.locator('[col-id="step_text"]')).to_have_text(f"{run.last_step:,}")
        assert row.locator("svg.spark polyline").count() == 1
    # Markup in a name is text, never parsed: no injected elements, no script ran.
    assert page.locator(".run-link b, .run-link script").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    assert not dialogs

    page.screenshot(path=str(screenshot_dir / "runs_page.png"), full_page=True)
    watched_page.assert_no_errors()


def test_stop_request_is_recorded(
    server: LiveServer, written_runs: tuple[Path, list[WrittenRun]]
) -> None:
    run = next(r for r in written_runs[1] if r.name == "'; DROP TABLE runs; --")
    reason = "browser test asked to stop"
    assert api_runs(server)[run.run_id]["stop_requested"] is False
    response = server.http.post(
        server.url(f"api/v1/runs/{run.run_id}/stop"), json={"reason": reason}, timeout=5
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"run_id": run.run_id, "stop": True, "reason": reason}

    detail = server.http.get(server.url(f"api/v1/runs/{run.run_id}"), timeout=5).json()
    assert detail["stop_requested"] is True
    assert detail["stop_reason"] == reason
    others = [r for rid, r in api_runs(server).items() if rid != run.run_id]
    assert len(others) == len(RUN_NAMES) - 1
    assert not any(r["stop_requested"] for r in others)
