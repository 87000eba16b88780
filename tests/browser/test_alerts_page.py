"""The run page's Alerts section in a real Chromium: what was sent about a run that turned red,
to which destination (by label: the webhook address never reaches a page)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.support.server import start_server, stop_server
from tests.support.trainings import train_diverging
from tests.support.webhook_receiver import receiving
from trainlight.app.alerts.destinations import destination

if TYPE_CHECKING:
    from tests.browser.conftest import WatchedPage

pytestmark = pytest.mark.browser


def test_run_page_lists_the_alerts_sent_about_the_run(
    tmp_path: Path, watched_page: WatchedPage, screenshot_dir: Path
) -> None:
    with receiving("/hooks/s3cr3t") as hook:
        store = tmp_path / "store"
        server = start_server(
            store, tmp_path / "serve.log", extra_args=("--alert-webhook", hook.url)
        )
        try:
            run_id = train_diverging(store, "diverging")
            server.wait_for(lambda: hook.messages(), 60, "an alert delivered")
            reds = {m["signal"] for m in hook.messages()}
            page = watched_page.page
            page.goto(server.url(f"run/{run_id}"), wait_until="domcontentloaded")
            rows = page.locator("#run-alerts table tr")
            expect(rows).to_have_count(1 + len(reds), timeout=20_000)  # header + one per red
            section = page.locator("#run-alerts")
            expect(section).to_contain_text(destination(hook.url).label)
            expect(section.locator("td.alert-sent")).to_have_count(len(reds))
            for signal in reds:
                expect(section).to_contain_text(signal)
            assert "s3cr3t" not in page.content()
            expect(page.locator("#run-alerts h2")).to_have_text(re.compile("Alerts"))
            page.locator("#run-alerts").screenshot(path=str(screenshot_dir / "run_alerts.png"))
            watched_page.assert_no_errors()
        finally:
            stop_server(server)
