"""Real processes for tests: a `trainlight serve` on 127.0.0.1 and scripted trainers.

Every wait here is bounded in time; every process is killed at teardown even if a test fails.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

_SERVING = re.compile(r"trainlight serving (http://127\.0\.0\.1:(\d+))/")
TRAINER = Path(__file__).with_name("trainer.py")


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]

    def runs(self) -> list[dict[str, Any]]:
        reply = requests.get(f"{self.url}/api/v1/runs", timeout=10)
        reply.raise_for_status()
        return list(reply.json()["runs"])

    def run(self, run_id: str) -> dict[str, Any] | None:
        reply = requests.get(f"{self.url}/api/v1/runs/{run_id}", timeout=10)
        return dict(reply.json()) if reply.status_code == 200 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(store: Path, port: int = 0, timeout: float = 60.0) -> Server:
    cmd = [
        sys.executable,
        "-m",
        "trainlight.app.cli",
        "serve",
        "--dir",
        str(store),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = _SERVING.search(line)
        if match:
            _drain_in_background(proc)
            return Server(match.group(1), proc)
    proc.kill()
    raise RuntimeError("server did not start:\n" + "".join(seen))


def stop_process(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@contextmanager
def running_server(store: Path, port: int = 0) -> Iterator[Server]:
    server = start_server(store, port)
    try:
        yield server
    finally:
        stop_process(server.proc)


def start_trainer(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Run tests/support/trainer.py; it prints 'run_id <id>' first, then progress lines."""
    return subprocess.Popen(
        [sys.executable, str(TRAINER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def read_line_starting(proc: subprocess.Popen[str], prefix: str, timeout: float = 60.0) -> str:
    """The first stdout line of `proc` that starts with `prefix` (bounded wait)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no line starting with {prefix!r} from the trainer")


def wait_until(predicate: Any, timeout: float, interval: float = 0.1, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def _drain_in_background(proc: subprocess.Popen[str]) -> None:
    """Keep reading the server's output so a full pipe never blocks it."""
    import threading

    def drain() -> None:
        assert proc.stdout is not None
        for _ in proc.stdout:
            pass

    threading.Thread(target=drain, daemon=True).start()
