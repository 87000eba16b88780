"""Shared parts of the browser tests: a real `trainlight serve` process and a real Chromium.

Browser tests are few and real (STYLE.md rule 8): the server is the CLI in a subprocess on
127.0.0.1 with an ephemeral port, the browser is the system Chromium (never a downloaded one),
and every page a test opens records console errors and page errors so the test can end by
asserting there were none. Every wait here is bounded in time.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

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
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0
_SERVING_PREFIX = "trainlight serving http://127.0.0.1:"


@dataclass
class LiveServer:
    """A running `trainlight serve` subprocess and how to reach it."""

    process: subprocess.Popen[str]
    base_url: str  # ends with "/"
    store_dir: Path
    log_path: Path
    http: requests.Session

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    def wait_for(self, check: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """`wait_until`, with the server's log in the message when it times out."""
        try:
            return wait_until(check, timeout_s, what=what)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\nserver log:\n{self.log_tail()}") from exc

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's stderr, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no server log: {exc})"


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


def start_server(store_dir: Path, log_path: Path, extra_args: tuple[str, ...] = ()) -> LiveServer:
    """Start `python -m trainlight.app.cli serve` on 127.0.0.1, port 0; wait for its URL line."""
    command = [
        sys.executable,
        "-m",
        "trainlight.app.cli",
        "serve",
        "--dir",
        str(store_dir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *extra_args,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TRAINLIGHT_TOKEN", None)
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command,
            cwd=store_dir.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_drain, args=(process, lines), daemon=True).start()
    http = requests.Session()
    http.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
    server = LiveServer(process, "", store_dir, log_path, http)
    try:
        server.base_url = _wait_for_url(process, lines)
    except BaseException:
        stop_server(server)
        raise
    return server


def _drain(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    """Read the server's stdout to the end so it can never block on a full pipe."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)
    lines.put(None)


def _wait_for_url(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> str:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError(f"server exited ({process.wait(5)}) before serving: {seen!r}")
        seen.append(line)
        if line.startswith(_SERVING_PREFIX):
            port = int(line[len(_SERVING_PREFIX) :].split("/", 1)[0])
            return f"http://127.0.0.1:{port}/"
    raise TimeoutError(f"no serving line within {SERVER_START_TIMEOUT_S}s; stdout: {seen!r}")


def stop_server(server: LiveServer) -> int:
    """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
    server.http.close()
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=SERVER_STOP_TIMEOUT_S)


def wait_until(
    check: Callable[[], Any], timeout_s: float, interval_s: float = 0.2, what: str = ""
) -> Any:
    """Poll `check` until it returns something truthy; bounded in time and in count."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    for _ in range(int(timeout_s / interval_s) + 1):
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what or check!r}; last={last!r}")


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
