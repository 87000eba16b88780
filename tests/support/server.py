"""A real `trainlight serve` subprocess on 127.0.0.1 for tests, and bounded waiting.

The server is the CLI itself, on an ephemeral port unless told otherwise; its stdout is read on a
thread (so a full pipe never blocks it), its log goes to a file for failure messages, and every
wait is bounded in time and in count.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from trainlight.demo.dashboard import follow_stdout, serving_url

SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0


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

    def runs(self) -> list[dict[str, Any]]:
        """`GET /api/v1/runs`."""
        reply = self.http.get(self.url("api/v1/runs"), timeout=10)
        reply.raise_for_status()
        return list(reply.json()["runs"])

    def run(self, run_id: str) -> dict[str, Any] | None:
        """`GET /api/v1/runs/<run_id>`, or None while the server does not know the run."""
        reply = self.http.get(self.url(f"api/v1/runs/{run_id}"), timeout=10)
        return dict(reply.json()) if reply.status_code == 200 else None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's stderr, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no server log: {exc})"


def start_server(
    store_dir: Path, log_path: Path, port: int = 0, extra_args: tuple[str, ...] = ()
) -> LiveServer:
    """Start `python -m trainlight.app.cli serve` on 127.0.0.1 (`port` 0: any free one)."""
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
        str(port),
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
    lines = follow_stdout(process)
    http = requests.Session()
    http.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
    server = LiveServer(process, "", store_dir, log_path, http)
    try:
        server.base_url = serving_url(process, lines, SERVER_START_TIMEOUT_S)
    except BaseException:
        stop_server(server)
        raise
    return server


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


def receiver_pids(main_pid: int) -> list[int]:
    """Live `trainlight.app.receiver` processes whose parent is `main_pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == main_pid and stat[0] != "Z" and b"trainlight.app.receiver" in command:
            found.append(int(entry.name))
    return found


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


@contextmanager
def running_server(store_dir: Path, port: int = 0) -> Iterator[LiveServer]:
    """A server for the duration of a `with` block, stopped even when the block fails."""
    store_dir.mkdir(parents=True, exist_ok=True)
    server = start_server(store_dir, store_dir.parent / f"serve-{store_dir.name}.log", port)
    try:
        yield server
    finally:
        stop_server(server)
