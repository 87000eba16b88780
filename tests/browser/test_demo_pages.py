"""The quick demo's store in a real Chromium: the README's screenshots come from here.

The runs are the demo's real trainings (tests/support/demo_store.py, shared with tests/demo), so
the grid shows every badge the way a user first sees it: each signal green on some run and red on
another. The screenshots land in artifacts/screenshots/demo_*.png (CI artefacts); the README
shows copies of them from docs/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.support.demo_store import QuickDemo
from trainlight.collectors.health.registry import signal_names
from trainlight.demo.catalogue import demo_runs

if TYPE_CHECKING:
    from tests.browser.conftest import WatchedPage
    from tests.support.server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DEMO_RUNS = len(demo_runs(quick=True))


@pytest.fixture(scope="module")
def server(
    quick_demo: QuickDemo, serve_store: Callable[[Path], LiveServer]
) -> Iterator[LiveServer]:
    live = serve_store(quick_demo.store)
    live.wait_for(lambda: len(live.runs()) == DEMO_RUNS, 60.0, what="the demo's runs listed")
    yield live


def test_demo_grid_shows_each_badge_green_somewhere_and_red_elsewhere(
    server: LiveServer, watched_page: WatchedPage, screenshot_dir: Path
) -> None:
    page = watched_page.page
    page.set_viewport_size({"width": 1500, "height": 760})
    page.goto(server.base_url, wait_until="domcontentloaded")
    expect(page.locator(".ag-center-cols-container .ag-row")).to_have_count(DEMO_RUNS)
    for signal in signal_names():
        cells = page.locator(f'.ag-center-cols-container [col-id="h_{signal}"] .badge')
        states = {cells.nth(i).get_attribute("data-state") for i in range(cells.count())}
        assert {"green", "red"} <= states, (signal, states)
    stopped = page.locator('.ag-center-cols-container [col-id="status"]', has_text="stopped")
    pruned = [spec for spec in demo_runs(quick=True) if spec.prune_on]
    expect(stopped).to_have_count(len(pruned))  # the auto-pruned runs
    page.wait_for_timeout(500)  # sparklines and lights settle
    page.screenshot(path=str(screenshot_dir / "demo_grid.png"))
    watched_page.assert_no_errors()


def test_demo_run_page_explains_a_red_verdict(
    server: LiveServer, watched_page: WatchedPage, screenshot_dir: Path
) -> None:
    run_id = next(r["run_id"] for r in server.runs() if r["name"] == "gan frozen adversary")
    page = watched_page.page
    page.set_viewport_size({"width": 1400, "height": 1500})
    page.goto(server.url(f"run/{run_id}"), wait_until="domcontentloaded")
    expect(page.locator("h1.run-title")).to_have_text("gan frozen adversary")
    verdict = page.locator("#panel-catch .panel-title .verdict")
    expect(verdict).to_have_text(re.compile("red"))
    expect(page.locator("#panel-catch .reason")).to_contain_text("no catch")
    expect(page.locator("#panel-catch .js-plotly-plot")).to_have_count(2)
    expect(page.locator(".run-header .facts")).to_contain_text("steps saved")
    page.wait_for_timeout(800)
    page.screenshot(path=str(screenshot_dir / "demo_run_page.png"))
    watched_page.assert_no_errors()


@pytest.mark.parametrize(
    ("run_name", "signal", "reason", "plots"),
    [
        ("mlp wide 150 noisy labels", "overfit", "from its best", 1),
        ("mlp deep sigmoid", "gradients", "gradient RMS", 2),
    ],
)
def test_demo_run_page_shows_the_evidence_of_overfit_and_gradients(
    server: LiveServer,
    watched_page: WatchedPage,
    screenshot_dir: Path,
    run_name: str,
    signal: str,
    reason: str,
    plots: int,
) -> None:
    run_id = next(r["run_id"] for r in server.runs() if r["name"] == run_name)
    page = watched_page.page
    page.set_viewport_size({"width": 1400, "height": 1500})
    page.goto(server.url(f"run/{run_id}"), wait_until="domcontentloaded")
    expect(page.locator(f"#panel-{signal} .panel-title .verdict")).to_have_text(re.compile("red"))
    expect(page.locator(f"#panel-{signal} .reason")).to_contain_text(reason)
    expect(page.locator(f"#panel-{signal} .js-plotly-plot")).to_have_count(plots)
    marks = page.locator(f"#panel-{signal} .js-plotly-plot .scatterlayer .point")
    expect(marks.first).to_be_visible()  # the rule's findings are drawn, not just the curves
    page.locator(f"#panel-{signal}").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot_dir / f"demo_{signal}.png"))
    watched_page.assert_no_errors()
