"""The demo's dashboard: `trainlight serve` as a child process, and the badges it reports.

The demo reuses the real server unchanged, the one process that ingests the store and serves
the pages, exactly as a user would start it. It runs in its own session (Ctrl-C reaches only the
demo, which then stops it), its log goes to a file, and the demo learns its address from the
line it prints once it listens. While trainings run, a thread polls `GET /api/v1/runs` for the
badges shown in the terminal. Torch-free.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from trainlight.collectors.wire import TOKEN_ENV

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
_SERVING = "trainlight serving "


@dataclass
class Dashboard:
    process: subprocess.Popen[str]
    url: str  # ends with "/"
    log_path: Path

    def stop(self) -> int:
        """SIGTERM (the server closes the store cleanly), SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=STOP_TIMEOUT_S)


class DashboardError(RuntimeError):
    pass


def start_dashboard(store_dir: Path, host: str, port: int, log_path: Path) -> Dashboard:
    """Start `trainlight serve` on `store_dir`; returns once it listens (bounded wait)."""
    command = [sys.executable, "-m", "trainlight.app.cli", "serve", "--dir", str(store_dir)]
    command += ["--host", host, "--port", str(port)]
    # A local demo on loopback needs no token; one inherited from the environment would lock
    # the badge polling out (and ask the user for it in the browser).
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            start_new_session=True,
        )
    lines = follow_stdout(process)
    dashboard = Dashboard(process, "", log_path)
    try:
        dashboard.url = serving_url(process, lines, START_TIMEOUT_S)
    except BaseException:
        dashboard.stop()
        raise
    return dashboard


def follow_stdout(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """A thread reads the server's stdout to its end (so it never blocks on a full pipe) into
    the returned queue; None marks the end."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="serve-stdout", daemon=True).start()
    return lines


def serving_url(
    process: subprocess.Popen[str], lines: queue.Queue[str | None], timeout_s: float
) -> str:
    """The address `trainlight serve` prints once it listens (a bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            raise DashboardError(f"the dashboard exited with code {process.wait(5)}")
        if line.startswith(_SERVING):
            return line[len(_SERVING) :].split()[0]
    raise DashboardError(f"the dashboard did not start listening within {timeout_s:.0f}s")


def fetch_health(url: str, timeout: float = 2.0) -> dict[str, dict[str, str]]:
    """run_id -> signal -> state, from `GET /api/v1/runs` ({} when the server does not answer)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(url + "api/v1/runs", timeout=timeout) as reply:
            runs = json.loads(reply.read())["runs"]
        return {str(run["run_id"]): dict(run.get("health") or {}) for run in runs}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class HealthPoller:
    """Polls the dashboard's badges on a thread; `latest` is the newest answer."""

    def __init__(self, url: str, interval: float = 2.0) -> None:
        self.url = url
        self.latest: Mapping[str, Mapping[str, str]] = {}
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-health", daemon=True)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._done.is_set():
            health = fetch_health(self.url)
            if health:
                self.latest = health
            self._done.wait(self._interval)
