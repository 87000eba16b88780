"""`/run/<id>`, `/lca/<id>` and `/compare` in a real Chromium against a real `trainlight serve`.

The runs are real short trainings written by Monitor in this process and ingested by the server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Response, expect

from tests.support.dashboard_runs import train_lca_mlp
from tests.support.segments import metrics_segment
from tests.support.trainings import train_gan
from trainlight.app.figures.heatmap_codec import decode_payload
from trainlight.collectors.schema import StoreLayout, make_run_id, write_atomically

if TYPE_CHECKING:  # fixtures come from conftest.py; only their types are imported
    from tests.browser.conftest import WatchedPage
    from tests.support.server import LiveServer

pytestmark = pytest.mark.browser
INGEST_TIMEOUT_S = 60.0
REFRESH_TIMEOUT_MS = 40_000  # the run page refreshes every 10 s; the server ingests meanwhile
LOSS_LENGTH = (
    "() => document.querySelector('.scalars .js-plotly-plot')"
    ".data.find(t => t.name === 'loss').x.length"
)
STEP_LABEL = re.compile(r"step ([\d,]+) · frame (\d+) of (\d+)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    store_dir = tmp_path_factory.mktemp("run-pages") / "store"
    return store_dir, {
        "lca": train_lca_mlp(store_dir, "lca mlp"),
        "gan": train_gan(store_dir, "gan", steps=600),
    }


@pytest.fixture(scope="module")
def server(
    runs: tuple[Path, dict[str, str]], serve_store: Callable[[Path], LiveServer]
) -> Iterator[LiveServer]:
    store_dir, ids = runs
    live = serve_store(store_dir)

    def all_finished() -> bool:
        return all((live.run(i) or {}).get("status") == "finished" for i in ids.values())

    live.wait_for(all_finished, INGEST_TIMEOUT_S, what="both runs ingested as finished")
    yield live


def step_label(page: Page) -> tuple[int, int]:
    """(step, frame number) shown under the LCA slider."""
    match = STEP_LABEL.search(page.locator("#lca-step-label").inner_text())
    assert match, page.locator("#lca-step-label").inner_text()
    return int(match[1].replace(",", "")), int(match[2])


def test_run_page_shows_panels(
    server: LiveServer,
    runs: tuple[Path, dict[str, str]],
    watched_page: WatchedPage,
    screenshot_dir: Path,
) -> None:
    page = watched_page.page
    page.goto(server.url(f"run/{runs[1]['lca']}?smooth=0.3"), wait_until="domcontentloaded")
    expect(page.locator("h1.run-title")).to_have_text("lca mlp")
    for signal in ("catch", "runaway", "dead_relu", "lca", "nonfinite"):
        expect(page.locator(f"#panel-{signal}")).to_be_visible()
    health = (server.run(runs[1]["lca"]) or {})["health"]
    for signal, state in health.items():  # every badge agrees with the API
        verdict = page.locator(f"#panel-{signal} .panel-title .verdict")
        expect(verdict).to_have_text(re.compile(state))
    expect(page.locator("#panel-catch .reason")).to_contain_text("mon.roles")
    expect(page.locator("#panel-lca .js-plotly-plot")).to_have_count(1)
    expect(page.locator(".scalars .js-plotly-plot")).to_have_count(2)  # loss, lr
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot_dir / "run_page.png"), full_page=True)

    page.goto(server.url(f"run/{runs[1]['gan']}"), wait_until="domcontentloaded")
    expect(page.locator("#panel-catch .panel-title .verdict")).to_contain_text("green")
    expect(page.locator("#panel-catch .js-plotly-plot")).to_have_count(2)  # content, adversary
    expect(page.locator("#panel-runaway .js-plotly-plot")).to_have_count(2)  # distance, CDFs
    expect(page.locator("#panel-runaway .gtitle").nth(1)).to_contain_text(
        "generated vs reference distribution at step 500"
    )
    page.locator("#run-from").fill("100")
    page.locator("#run-from").press("Enter")
    expect(page).to_have_url(re.compile(r"from=100"))
    page.screenshot(path=str(screenshot_dir / "run_page_gan.png"), full_page=True)
    watched_page.assert_no_errors()


def test_heatmap_plays_and_copied_link_restores_the_view(
    server: LiveServer,
    runs: tuple[Path, dict[str, str]],
    watched_page: WatchedPage,
    chromium_browser: Browser,
    screenshot_dir: Path,
) -> None:
    page = watched_page.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    # A link to the heatmap's old address (release 21) lands on its new one, query kept.
    page.goto(server.url(f"run/{runs[1]['lca']}/lca?layer=2&step=0"), wait_until="domcontentloaded")
    expect(page).to_have_url(re.compile(rf"/lca/{runs[1]['lca']}\?layer=2&step=0$"))
    expect(page.locator("#lca-step-label")).to_contain_text("frame 1 of")
    expect(page.locator("#lca-figure .js-plotly-plot")).to_have_count(1)
    expect(page.locator("#lca-figure .gtitle")).to_contain_text("2 — step 0")
    page.locator("#lca-play").click()
    expect(page.locator("#lca-step-label")).not_to_contain_text("frame 1 of", timeout=10_000)
    expect(page).to_have_url(re.compile(r"play=1"))
    page.wait_for_timeout(1200)
    page.locator("#lca-play").click()  # pause
    expect(page.locator("#lca-play")).to_contain_text("play")
    page.wait_for_timeout(800)  # let a tick in flight land
    step, frame = step_label(page)
    assert frame > 1
    expect(page).to_have_url(re.compile(rf"layer=2&step={step}(&|$)"))
    page.screenshot(path=str(screenshot_dir / "lca_page.png"), full_page=True)

    page.locator("#lca-copy").click()
    page.wait_for_timeout(300)
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == page.url and f"step={step}" in copied

    fresh_context = chromium_browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        fresh = fresh_context.new_page()
        with fresh.expect_response(renders_frames) as render:
            fresh.goto(copied, wait_until="domcontentloaded")
        expect(fresh.locator("#lca-step-label")).to_contain_text(f"step {step:,} ·")
        expect(fresh.locator("#lca-figure .gtitle")).to_contain_text(f"2 — step {step:,}")
        expect(fresh.locator("#lca-play")).to_contain_text("play")  # paused, as copied
        assert_heatmap_shows_its_payload(fresh, render.value, step)
        fresh.screenshot(path=str(screenshot_dir / "lca_page_hover.png"))
    finally:
        fresh_context.close()

    page.locator("#lca-all input").check()
    expect(page.locator("#lca-figure .js-plotly-plot")).to_have_count(3)
    page.wait_for_function(  # every layer's graph got its frame
        "() => Array.from(document.querySelectorAll('#lca-figure .js-plotly-plot'))"
        ".every(g => g.data[0].z.length > 0)",
        timeout=10_000,
    )
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot_dir / "lca_page_all.png"), full_page=True)
    watched_page.assert_no_errors()


def renders_frames(response: Response) -> bool:
    """The heatmap page's render callback: it sends the `lca-frames` store."""
    request = response.request
    return "/_dash-update-component" in response.url and "lca-frames.data" in (
        request.post_data or ""
    )


def assert_heatmap_shows_its_payload(page: Page, render: Response, step: int) -> None:
    """The plot's z is the 8-bit frame the render callback sent, decoded (as `decode_payload`
    does); hover shows the dequantised value with the scale note."""
    (payload,) = render.json()["response"]["lca-frames"]["data"]
    assert (payload["layer"], payload["step"]) == ("2", step)
    z = page.evaluate(
        "() => Array.from(document.querySelector('#lca-figure .js-plotly-plot').data[0].z,"
        " row => Array.from(row, v => Number.isNaN(v) ? null : v))"
    )
    shown = np.asarray(z, dtype=np.float64)  # None (a gap) becomes NaN
    expected = decode_payload(payload).astype(np.float64)
    expected[~np.isfinite(expected)] = np.nan
    assert np.array_equal(shown, expected, equal_nan=True)
    meta = page.evaluate("() => document.querySelector('#lca-figure .js-plotly-plot').data[0].meta")
    assert meta == [payload["note"]] and payload["note"].endswith(", 8-bit")
    expect(page.locator("#lca-figure .cbtitle")).to_contain_text("8-bit")
    page.locator("#lca-figure .nsewdrag").first.hover()
    hover = page.locator("#lca-figure .hoverlayer")
    expect(hover).to_contain_text("row")
    expect(hover).to_contain_text(payload["note"])
    assert re.search(r": (≈ -?[\d.e-]+|.* \(beyond ±)", hover.text_content() or "")


def test_unknown_run_is_a_clear_not_found(server: LiveServer, watched_page: WatchedPage) -> None:
    page = watched_page.page
    for path in ("run/no-such-run", "lca/no-such-run", "run/no-such-run/lca"):
        page.goto(server.url(path), wait_until="domcontentloaded")
        expect(page.locator(".not-found h1")).to_have_text("Run not found")
        expect(page.locator(".not-found")).to_contain_text("no-such-run")
    watched_page.assert_no_errors()


def test_compare_overlays_runs(
    server: LiveServer,
    runs: tuple[Path, dict[str, str]],
    watched_page: WatchedPage,
    screenshot_dir: Path,
) -> None:
    page = watched_page.page
    ids = runs[1]
    page.goto(
        server.url(f"compare?runs={ids['lca']},{ids['gan']},gone"), wait_until="domcontentloaded"
    )
    expect(page.locator(".compare-runs li")).to_have_count(2)
    expect(page.locator(".compare-page")).to_contain_text("Not in this store: gone")
    plots = page.locator(".compare-page .js-plotly-plot")
    expect(plots).to_have_count(5, timeout=15_000)  # 4 keys + LCA
    page.screenshot(path=str(screenshot_dir / "compare_page.png"), full_page=True)
    watched_page.assert_no_errors()


def test_live_refresh_patches_curves_in_place(
    server: LiveServer, runs: tuple[Path, dict[str, str]], watched_page: WatchedPage
) -> None:
    """A refresh after new rows sends only the curves' new tails; the panels stay as they are."""
    layout = StoreLayout(runs[0])
    run_id = make_run_id("live")
    layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)

    def write(seq: int, steps: range) -> None:
        rows = [(s, "loss", 1.0 / (1.0 + s / 50.0)) for s in steps]
        payload = metrics_segment(run_id, seq, rows, name="live", health={"confirm": 1})
        write_atomically(layout.segment_path(run_id, seq), payload)

    write(0, range(300))
    server.wait_for(lambda: server.run(run_id), INGEST_TIMEOUT_S, what="the live run ingested")
    page = watched_page.page
    page.goto(server.url(f"run/{run_id}"), wait_until="domcontentloaded")
    expect(page.locator(".scalars .js-plotly-plot")).to_have_count(1, timeout=15_000)
    expect(page.locator(".run-header .header-link")).to_have_count(0)  # no LCA: no link
    assert page.evaluate(LOSS_LENGTH) == 300
    page.evaluate("() => { document.querySelector('#panel-catch').dataset.kept = 'yes'; }")

    def refresh_with_data(response: Response) -> bool:
        posted = response.request.post_data or ""
        return (
            "_dash-update-component" in response.url
            and "run-refresh" in posted
            and "run-header" in posted  # the page's main render, not the extras' callback
            and (response.status == 200)
        )

    with page.expect_response(refresh_with_data, timeout=REFRESH_TIMEOUT_MS) as answer:
        write(1, range(300, 400))
    body = answer.value.text()
    page.wait_for_function(f"() => ({LOSS_LENGTH})() === 400", timeout=10_000)
    assert "__dash_patch_update" in body  # a Patch of the curve, not a new figure
    assert '"run-body"' not in body  # the body was left alone ...
    assert page.evaluate("() => document.querySelector('#panel-catch').dataset.kept") == "yes"
    assert len(body) < 20_000  # ... and only the new points travelled
    expect(page.locator(".run-header")).to_contain_text("399")  # the header did update
    watched_page.assert_no_errors()
