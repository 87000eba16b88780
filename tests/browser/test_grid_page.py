"""The triage grid in a real Chromium: badges from real trainings, URL filters, stop, links.

The runs are the small real trainings of tests/support/trainings.py (nothing scripts a signal):
a diverging regression (nonfinite red), a sane MLP (green) and an MLP whose first ReLU layer is
dead (dead_relu red). The server ingests them like any other store.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Dialog, Locator, Page, Response, expect

from tests.support.segments import metrics_segment
from tests.support.server import start_server, stop_server
from tests.support.trainings import train_diverging, train_mlp
from trainlight.collectors.schema import StoreLayout, write_atomically

if TYPE_CHECKING:  # fixtures come from conftest.py; only their types are imported
    from tests.browser.conftest import WatchedPage
    from tests.support.server import LiveServer

pytestmark = pytest.mark.browser
INGEST_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    store = tmp_path_factory.mktemp("grid-page") / "store"
    runs = {
        "sane": train_mlp(store, "mlp sane"),
        "dead": train_mlp(store, "mlp dead", hidden_bias=-5.0),
        "diverging": train_diverging(store, "diverging"),
    }
    return store, runs


@pytest.fixture(scope="module")
def server(
    trained: tuple[Path, dict[str, str]], serve_store: Callable[[Path], LiveServer]
) -> Iterator[LiveServer]:
    store, runs = trained
    live = serve_store(store)

    def all_judged() -> bool:
        found = {r["run_id"]: r for r in live.runs()}
        return all(
            rid in found
            and found[rid]["status"] == "finished"
            and found[rid]["health"].get("nonfinite") in ("green", "red")
            for rid in runs.values()
        )

    live.wait_for(all_judged, INGEST_TIMEOUT_S, what="every run ingested and judged")
    yield live


def grid_row(page: Page, run_id: str) -> Locator:
    return page.locator(f'.ag-center-cols-container .ag-row[row-id="{run_id}"]')


def badge(page: Page, run_id: str, signal: str) -> Locator:
    return grid_row(page, run_id).locator(f'[col-id="h_{signal}"] .badge')


def shown_ids(page: Page, count: int) -> list[str]:
    """The ids of the rows shown, once the grid shows `count` rows."""
    rows = page.locator(".ag-center-cols-container .ag-row")
    expect(rows).to_have_count(count)
    return sorted(row.get_attribute("row-id") or "" for row in rows.all())


def test_badges_show_each_runs_health_worst_first(
    server: LiveServer,
    trained: tuple[Path, dict[str, str]],
    watched_page: WatchedPage,
    screenshot_dir: Path,
) -> None:
    runs = trained[1]
    page = watched_page.page
    page.goto(server.base_url, wait_until="domcontentloaded")
    expect(page.locator(".ag-center-cols-container .ag-row")).to_have_count(3)

    red = badge(page, runs["diverging"], "nonfinite")
    expect(red).to_have_attribute("data-state", "red")
    expect(red).to_have_text("■")
    assert "Inf" in (red.get_attribute("title") or "")
    expect(badge(page, runs["sane"], "nonfinite")).to_have_attribute("data-state", "green")
    expect(badge(page, runs["sane"], "dead_relu")).to_have_attribute("data-state", "green")
    expect(badge(page, runs["dead"], "dead_relu")).to_have_attribute("data-state", "red")
    expect(badge(page, runs["sane"], "catch")).to_have_attribute("data-state", "grey")
    expect(badge(page, runs["sane"], "catch")).to_have_text("○")
    # Worst health first: the sane run is last (AG Grid's row-index is the display order).
    sane_index = grid_row(page, runs["sane"]).get_attribute("row-index")
    assert sane_index == "2"
    expect(page.locator("#grid-count")).to_have_text("3 runs")

    page.screenshot(path=str(screenshot_dir / "grid.png"), full_page=True)
    watched_page.assert_no_errors()


def test_update_age_is_formatted_and_ticks_in_the_browser(
    server: LiveServer, trained: tuple[Path, dict[str, str]], watched_page: WatchedPage
) -> None:
    runs = trained[1]
    page = watched_page.page
    page.set_viewport_size({"width": 1600, "height": 900})  # every column in view
    page.goto(server.base_url, wait_until="domcontentloaded")
    age = grid_row(page, runs["sane"]).locator('[col-id="updated_ms"] .age')
    expect(age).to_have_text(re.compile(r"^\d+[smhd] ago$"))
    updated = datetime.fromisoformat((age.get_attribute("title") or "").replace("Z", "+00:00"))
    assert timedelta(0) <= datetime.now(UTC) - updated < timedelta(hours=1)
    shown = age.inner_text()
    if shown.endswith("s ago"):  # seconds tick on the browser's clock, with no server call
        expect(age).not_to_have_text(shown, timeout=5_000)
    ages = page.evaluate(
        "[tlAge(null, 0), tlAge(5000, 0), tlAge(0, 59999), tlAge(0, 90000), tlAge(0, 7.2e6),"
        " tlAge(0, 1.8e8)]"
    )
    assert ages == ["never", "0s ago", "59s ago", "1m ago", "2h ago", "2d ago"]
    watched_page.assert_no_errors()


def test_opening_a_state_filter_link_filters(
    server: LiveServer, trained: tuple[Path, dict[str, str]], watched_page: WatchedPage
) -> None:
    runs = trained[1]
    page = watched_page.page
    page.goto(server.url("?state=red"), wait_until="domcontentloaded")
    expect(page.locator("#grid-count")).to_have_text("2 of 3 runs")
    assert shown_ids(page, 2) == sorted([runs["dead"], runs["diverging"]])
    expect(page.locator("#grid-state")).to_contain_text("red")

    page.goto(server.url("?q=sane&state=green"), wait_until="domcontentloaded")
    expect(page.locator("#grid-count")).to_have_text("1 of 3 runs")
    assert shown_ids(page, 1) == [runs["sane"]]
    expect(page.locator("#grid-text")).to_have_value("sane")
    watched_page.assert_no_errors()


def test_the_batch_summary_matches_the_api_and_a_count_filters_the_grid(
    server: LiveServer, trained: tuple[Path, dict[str, str]], watched_page: WatchedPage
) -> None:
    runs = trained[1]
    order = ("red", "amber", "green", "grey")
    worst: dict[str, int] = {}
    for run in server.runs():  # the API's health, worst state per run
        states = set(run["health"].values())
        key = next(s for s in order if s in states)
        worst[key] = worst.get(key, 0) + 1
    page = watched_page.page
    page.goto(server.url("/"), wait_until="domcontentloaded")
    summary = page.locator("#grid-summary .batch-summary")
    for state, count in worst.items():
        expect(summary.locator(f".summary-count.summary-{state}")).to_contain_text(
            f"{count} {state}"
        )
    expect(summary).to_contain_text("3 finished")
    expect(summary.locator(".summary-attention a")).to_have_count(
        worst.get("red", 0) + worst.get("amber", 0)
    )
    summary.locator(".summary-count.summary-red").click()
    expect(page).to_have_url(re.compile(r"\?state=red$"))
    expect(page.locator("#grid-count")).to_have_text(f"{worst['red']} of 3 runs")
    assert shown_ids(page, worst["red"]) == sorted([runs["dead"], runs["diverging"]])
    expect(summary.locator(".summary-count")).to_have_count(1)  # the summary follows the filter
    watched_page.assert_no_errors()


def test_a_copied_link_reproduces_filters_sort_and_selection(
    server: LiveServer, trained: tuple[Path, dict[str, str]], watched_page: WatchedPage
) -> None:
    runs = trained[1]
    page = watched_page.page
    page.goto(server.url("?sort=name"), wait_until="domcontentloaded")
    row = grid_row(page, runs["sane"])
    expect(row).to_have_count(1)
    row.locator("input.ag-checkbox-input").check()
    expect(page).to_have_url(server.url(f"?sort=name&sel={runs['sane']}"))
    expect(page.locator("#grid-compare")).to_have_attribute("href", f"/compare?runs={runs['sane']}")
    page.locator("#grid-live input").uncheck()
    expect(page).to_have_url(server.url(f"?sort=name&sel={runs['sane']}&live=0"))
    copied = page.url

    fresh = page.context.browser.new_context(viewport={"width": 1400, "height": 900})  # type: ignore[union-attr]
    try:
        other = fresh.new_page()
        other.goto(copied, wait_until="domcontentloaded")
        again = grid_row(other, runs["sane"])
        expect(again.locator("input.ag-checkbox-input")).to_be_checked()
        expect(other.locator("#grid-live input")).not_to_be_checked()
        expect(other.locator("#grid-sort")).to_contain_text("name")
        names = other.locator(".ag-center-cols-container a.run-link")
        expect(names).to_have_count(3)
        order = sorted(names.all(), key=lambda n: int(_row_index(n)))
        assert [n.text_content() for n in order] == ["diverging", "mlp dead", "mlp sane"]
        expect(other).to_have_url(copied)
    finally:
        fresh.close()
    watched_page.assert_no_errors()


def _row_index(link: Locator) -> str:
    return link.locator("xpath=ancestor::div[@row-index][1]").get_attribute("row-index") or "0"


def test_stop_selected_asks_then_requests_the_stop(
    server: LiveServer, trained: tuple[Path, dict[str, str]], watched_page: WatchedPage
) -> None:
    run_id = trained[1]["dead"]
    assert (server.run(run_id) or {})["stop_requested"] is False
    page = watched_page.page
    dialogs: list[str] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.goto(server.url(f"?sel={run_id}"), wait_until="domcontentloaded")
    expect(grid_row(page, run_id).locator("input.ag-checkbox-input")).to_be_checked()
    expect(page.locator("#grid-stop")).to_be_enabled()
    page.locator("#grid-stop").click()
    expect(page.locator("#grid-message")).to_have_text("Stop requested for 1 run(s).")
    assert len(dialogs) == 1 and run_id in dialogs[0]
    detail = server.run(run_id)
    assert detail is not None and detail["stop_requested"] is True
    others = [r for r in server.runs() if r["run_id"] != run_id]
    assert not any(r["stop_requested"] for r in others)
    watched_page.assert_no_errors()


def test_live_refresh_keeps_selection(
    server: LiveServer, trained: tuple[Path, dict[str, str]], watched_page: WatchedPage
) -> None:
    run_id = trained[1]["sane"]
    page = watched_page.page
    updates: list[str] = []
    page.on(
        "requestfinished",
        lambda r: updates.append(r.url) if "_dash-update-component" in r.url else None,
    )
    page.goto(server.url(f"?sel={run_id}&every=1"), wait_until="domcontentloaded")
    checkbox = grid_row(page, run_id).locator("input.ag-checkbox-input")
    expect(checkbox).to_be_checked()
    seen = len(updates)
    for _ in range(30):  # page.wait_for_timeout lets Playwright deliver events; time.sleep won't
        if len(updates) >= seen + 2:
            break
        page.wait_for_timeout(500)
    assert len(updates) >= seen + 2, f"no live refresh: {updates}"
    expect(checkbox).to_be_checked()
    expect(page).to_have_url(server.url(f"?sel={run_id}&every=1"))
    watched_page.assert_no_errors()


def test_live_refresh_sends_only_changed_rows_in_place(
    tmp_path: Path,
    serve_store: Callable[[Path], LiveServer],
    watched_page: WatchedPage,
    screenshot_dir: Path,
) -> None:
    """A run that logs while the page is open is updated in place, a new run is added at its
    sorted position, through row transactions; selection survives."""
    store = tmp_path / "live-store"
    live = serve_store(store)

    def deliver(run_id: str, seq: int, name: str, steps: range) -> None:
        rows = [(s, "loss", 1.0 / (s + 1)) for s in steps]
        layout = StoreLayout.resolve(store)
        layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
        payload = metrics_segment(run_id, seq, rows, name=name, pid=os.getpid())
        write_atomically(layout.segment_path(run_id, seq), payload)

    def has_runs(n: int) -> Callable[[], bool]:
        return lambda: len(live.runs()) == n

    deliver("beta", 0, "beta", range(10))
    deliver("gamma", 0, "gamma", range(10))
    live.wait_for(has_runs(2), INGEST_TIMEOUT_S, what="two runs ingested")
    page = watched_page.page
    sent: list[dict[str, Any]] = []
    page.on("response", lambda r: _grid_response(r, sent))
    page.goto(live.url("?sort=name&every=1&sel=gamma"), wait_until="domcontentloaded")
    expect(page.locator(".ag-center-cols-container .ag-row")).to_have_count(2)
    # The response handler reads each body while the test waits, so the DOM can show the rows
    # before the handler has recorded them: wait (bounded) for the record too.
    _wait_for(page, lambda: any("rowData" in (s.get("grid") or {}) for s in sent))  # all rows

    deliver("alpha", 0, "alpha", range(5))  # sorts first by name
    deliver("gamma", 1, "gamma", range(10, 20))
    expect(page.locator(".ag-center-cols-container .ag-row")).to_have_count(3)
    expect(grid_row(page, "alpha")).to_have_attribute("row-index", "0")
    expect(grid_row(page, "gamma")).to_have_attribute("row-index", "2")
    expect(grid_row(page, "gamma").locator('[col-id="step_text"]')).to_have_text("19")
    expect(grid_row(page, "gamma").locator("input.ag-checkbox-input")).to_be_checked()
    expect(page.locator("#grid-count")).to_have_text("3 runs")

    def moves() -> list[dict[str, Any]]:
        return [s["grid"]["rowTransaction"] for s in sent if "rowTransaction" in s.get("grid", {})]

    _wait_for(page, lambda: any(r["run_id"] == "alpha" for t in moves() for r in t["add"]))
    added = [r["run_id"] for t in moves() for r in t["add"]]
    updated = {r["run_id"] for t in moves() for r in t["update"]}
    assert added == ["alpha"] and "gamma" in updated
    assert all("rowData" not in s.get("grid", {}) for s in sent[1:])  # never all rows again
    quiet = len(sent)
    for _ in range(7):  # 3+ refreshes while rows only grow older (the age ticks in the browser)
        page.wait_for_timeout(500)
    assert len(sent) == quiet, f"rows resent though only their age changed: {sent[quiet:]}"
    page.screenshot(path=str(screenshot_dir / "grid-live.png"), full_page=True)
    watched_page.assert_no_errors()


def _wait_for(page: Page, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Let Playwright dispatch events until `condition` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        page.wait_for_timeout(50)


def _grid_response(response: Response, sink: list[dict[str, Any]]) -> None:
    """Record the grid outputs of every `_dash-update-component` answer."""
    if "_dash-update-component" not in response.url or response.status != 200:
        return
    try:
        body = response.json()
    except Exception:  # a response whose body was dropped: not a grid one we need
        return
    outputs = body.get("response", {})
    if "grid" in outputs:
        sink.append(outputs)


def test_stop_selected_works_on_a_server_with_a_token(
    tmp_path: Path, watched_page: WatchedPage
) -> None:
    """With a token, the page opened once with `?token=` holds the cookie that authorises its
    callbacks: Stop selected stops, it does not send the user to the API."""
    store = tmp_path / "token-store"
    layout = StoreLayout.resolve(store)
    layout.run_inbox("guarded").mkdir(parents=True, exist_ok=True)
    rows = [(s, "loss", 1.0) for s in range(5)]
    payload = metrics_segment("guarded", 0, rows, name="guarded", pid=os.getpid())
    write_atomically(layout.segment_path("guarded", 0), payload)
    live = start_server(store, tmp_path / "token-serve.log", extra_args=("--token", "s3cret"))
    try:
        live.http.headers["Authorization"] = "Bearer s3cret"
        live.wait_for(lambda: len(live.runs()) == 1, INGEST_TIMEOUT_S, what="the run ingested")
        page = watched_page.page
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(live.url("?sel=guarded&token=s3cret"), wait_until="domcontentloaded")
        assert "token=" not in page.url  # the cookie took its place
        expect(grid_row(page, "guarded").locator("input.ag-checkbox-input")).to_be_checked()
        page.locator("#grid-stop").click()
        expect(page.locator("#grid-message")).to_have_text("Stop requested for 1 run(s).")
        assert (live.run("guarded") or {}).get("stop_requested") is True
        watched_page.assert_no_errors()
    finally:
        stop_server(live)
