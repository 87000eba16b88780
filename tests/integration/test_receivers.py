"""`trainlight serve --receivers 2` on 127.0.0.1: ingest over HTTP lands whichever process the
kernel hands each connection to, the dashboard and API answer through any of them, the guards
hold in receivers too, and `kill -9` of the main process takes the receivers down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.segments import metrics_segment
from tests.support.server import start_server, stop_server, wait_until

TOKEN = "receivers-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEGMENT = {"Content-Type": "application/octet-stream"}
CONNECTIONS = 12  # fresh connections: SO_REUSEPORT spreads them over the three processes


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def second_server_fails(base_url: str, store_dir: Path) -> bool:
    """Another `serve --receivers` on a port in use must not silently share it."""
    port = base_url.rstrip("/").rsplit(":", 1)[1]
    command = [sys.executable, "-m", "trainlight.app.cli", "serve", "--dir", str(store_dir)]
    command += ["--port", port, "--receivers", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return done.returncode != 0 and "Address already in use" in done.stderr


def test_receivers_ingest_relay_guard_and_die_with_the_main_process(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    args = ("--receivers", "2", "--token", TOKEN)
    server = start_server(store_dir, tmp_path / "serve.log", extra_args=args)
    receivers: list[int] = []
    try:
        receivers = server.wait_for(lambda: children(server.process.pid), 20, "receivers")
        assert len(receivers) == 2
        url = server.url("api/v1/ingest")
        for seq in range(CONNECTIONS):  # a new connection each: some reach each process
            data = metrics_segment("spread", seq, [(seq, "loss", 1.0 / (seq + 1))])
            params = {"run_id": "spread", "seq": str(seq)}
            refused = requests.post(url, params=params, data=data, headers=SEGMENT, timeout=10)
            assert refused.status_code == 401
            reply = requests.post(
                url, params=params, data=data, headers={**AUTH, **SEGMENT}, timeout=10
            )
            assert reply.status_code == 202, reply.text
            page = requests.get(server.url("api/v1/runs"), headers=AUTH, timeout=10)
            assert page.status_code == 200, page.text  # relayed when a receiver got it
            control = requests.get(server.url("api/v1/runs/spread/control"), headers=AUTH)
            assert control.status_code in (200, 404) and control.json().get("stop") in (None, False)

        def ingested() -> bool:
            run = requests.get(server.url("api/v1/runs/spread"), headers=AUTH, timeout=10)
            return run.status_code == 200 and run.json()["last_step"] == CONNECTIONS - 1

        assert server.wait_for(ingested, 30, "every segment ingested")
        assert second_server_fails(server.base_url, tmp_path / "other")
        stop = requests.post(
            server.url("api/v1/runs/spread/stop"), headers={**AUTH, "X-Trainlight": "1"}, timeout=10
        )
        assert stop.status_code == 200, stop.text
        for _ in range(6):  # the stop reaches the collector whichever process answers
            control = requests.get(server.url("api/v1/runs/spread/control"), headers=AUTH)
            assert control.json()["stop"] is True, control.text
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        assert wait_until(lambda: not any(alive(pid) for pid in receivers), 15, what="exit")
    finally:
        stop_server(server)
        for pid in receivers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
