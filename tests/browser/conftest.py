"""Shared parts of the browser tests: a real `trainlight serve` process and a real Chromium.

Browser tests are few and real (STYLE.md rule 8): the server is the CLI in a subprocess on
127.0.0.1 with an ephemeral port, the browser is the system Chromium (never a downloaded one),
and every page a test opens records console errors and page errors so the test can end by
asserting there were none. Every wait here is bounded in time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from tests.support.server import LiveServer, start_server, stop_server

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


@dataclass
class WatchedPage:
    """A Chromium page plus every console error and uncaught page error it produced."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def assert_no_errors(self) -> None:
        problems = [f"console: {m}" for m in self.console_errors]
        problems += [f"pageerror: {m}" for m in self.page_errors]
        assert not problems, "browser reported errors:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def serve_store() -> Iterator[Callable[[Path], LiveServer]]:
    """Start servers on store directories; every one is stopped when the module ends."""
    started: list[LiveServer] = []

    def start(store_dir: Path) -> LiveServer:
        server = start_server(store_dir, store_dir.parent / f"serve-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        stop_server(server)


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """`artifacts/screenshots/` under the repository root (gitignored), created."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def watched_page(chromium_browser: Browser) -> Iterator[WatchedPage]:
    """A fresh page in its own context that records console errors and page errors."""
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    watched = WatchedPage(context.new_page())

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.console_errors.append(f"{message.text} @ {message.location}")

    def on_page_error(exc: Error) -> None:
        watched.page_errors.append(f"{exc.name}: {exc.message}")

    watched.page.on("console", on_console)
    watched.page.on("pageerror", on_page_error)
    try:
        yield watched
    finally:
        context.close()
