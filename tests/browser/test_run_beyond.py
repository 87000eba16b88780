"""The run page's replicas / loss landscape / layer sizing panels in a real Chromium.

Two real replica runs (Monitor with predictions, landscape slices and watched activations) and a
real offline 2-D surface (`trainlight landscape`'s job), served by a real `trainlight serve`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.support.replica_runs import train_replicas

if TYPE_CHECKING:  # fixtures come from conftest.py; only their types are imported
    from tests.browser.conftest import WatchedPage
    from tests.support.server import LiveServer

pytestmark = pytest.mark.browser
INGEST_TIMEOUT_S = 60.0
SLIDER_ACTIVE = (
    "() => document.querySelector('#beyond-slice .js-plotly-plot').layout.sliders[0].active"
)


def test_run_page_shows_replicas_landscape_and_sizing(
    tmp_path: Path,
    serve_store: Callable[[Path], LiveServer],
    watched_page: WatchedPage,
    screenshot_dir: Path,
) -> None:
    store_dir = tmp_path / "store"
    ids = train_replicas(store_dir, [0, 1])
    server = serve_store(store_dir)

    def both_finished() -> bool:
        return all((server.run(i) or {}).get("status") == "finished" for i in ids)

    server.wait_for(both_finished, INGEST_TIMEOUT_S, what="both replicas ingested as finished")
    page = watched_page.page
    page.goto(server.url(f"run/{ids[0]}"), wait_until="domcontentloaded")
    expect(page.locator("#panel-repro h2")).to_have_text("Reproducibility (replicas)")
    expect(page.locator("#panel-repro .panel-title .verdict")).to_have_text(
        # seeds 0 and 1 differ in initialisation and data order, 60 steps: relative PD on the
        # top class ~0.19 (band 0.15-0.24), confidently above the 0.1 budget
        "■ red"
    )
    expect(page.locator("#panel-repro .reason")).to_contain_text("replicas seed 1")
    expect(page.locator("#beyond-repro .js-plotly-plot")).to_have_count(1)
    expect(page.locator("#panel-landscape h2")).to_have_text("Loss landscape")
    for graph in ("beyond-slice", "beyond-sharpness", "beyond-surface"):
        expect(page.locator(f"#{graph} .js-plotly-plot")).to_have_count(1)
    expect(page.locator("#beyond-slice .slider-container")).to_have_count(1)
    expect(page.locator("#beyond-surface .contour")).not_to_have_count(0)
    expect(page.locator("#panel-sizing h2")).to_have_text("Layer sizing")
    expect(page.locator("#panel-sizing .js-plotly-plot")).to_have_count(2)  # two ReLU layers
    expect(page.locator("#panel-sizing .sizing-hints li")).to_have_count(2)
    assert page.evaluate(SLIDER_ACTIVE) == 5  # six slices, the latest shown
    page.locator("#beyond-slice .updatemenu-button").first.click()  # play the animation
    page.wait_for_timeout(800)
    page.locator("#panel-repro").scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir / "run_beyond.png"), full_page=True)
    watched_page.assert_no_errors()
