"""`trainlight serve --receivers N`: real servers on 127.0.0.1, real Monitors, real processes.

Segments that runs send through receivers are ingested exactly once, a stop request reaches a run
whose collector talks to a receiver, receivers apply the main server's Host and token checks, and
no receiver outlives the main process, however it ends.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from tests.support.segments import metrics_segment
from tests.support.server import (
    LiveServer,
    receiver_pids,
    start_server,
    stop_server,
    wait_until,
)
from trainlight.app.store.database import Store
from trainlight.collectors import Monitor
from trainlight.collectors.http_sink import HttpSink
from trainlight.collectors.problems import Problems
from trainlight.collectors.schema import StoreLayout

SEGMENT = {"Content-Type": "application/vnd.apache.parquet", "X-Trainlight": "1"}
STEPS = 120


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ingest(server_url: str, run_id: str, seq: int, **headers: str) -> requests.Response:
    return requests.post(
        f"{server_url}api/v1/ingest",
        params={"run_id": run_id, "seq": seq},
        data=metrics_segment(run_id, seq, [(seq, "loss", 1.0)]),
        headers={**SEGMENT, **headers},
        timeout=10,
    )


def advertised(server: LiveServer, run_id: str, **headers: str) -> list[int]:
    reply = ingest(server.base_url, run_id, 0, **headers)
    assert reply.status_code == 202, reply.text
    return list(reply.json().get("receivers", []))


def stored_rows(store_dir: Path, run_id: str) -> tuple[int, int]:
    """(metric rows, distinct steps) of a run, read once the server is stopped."""
    store = Store(StoreLayout.resolve(store_dir))
    try:
        with store.read() as cur:
            row = cur.execute(
                "SELECT count(*), count(DISTINCT step) FROM metrics WHERE run_id = ? "
                "AND key = 'loss'",
                [run_id],
            ).fetchone()
    finally:
        store.close()
    assert row is not None
    return int(row[0]), int(row[1])


def test_runs_sent_through_receivers_are_ingested_exactly_once(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    server = start_server(
        store_dir, tmp_path / "serve.log", extra_args=("--receivers", "2", "--group-commit")
    )
    run_ids = []
    try:
        ports = advertised(server, "probe-run")
        assert len(ports) == 2
        sinks = []
        for index in range(3):
            sink = HttpSink(server.base_url, Problems(), outbox=tmp_path / "outbox")
            with Monitor(run=f"through receivers {index}", sink=sink, flush_interval=0.02) as mon:
                for step in range(STEPS):
                    mon.log(step, loss=float(step))
                    if step % 40 == 0:
                        mon.flush()
            run_ids.append(mon.run_id)
            sinks.append((sink, mon.run_id))
        for sink, run_id in sinks:
            port = int(sink.address_for(run_id).rsplit(":", 1)[1])
            assert port in ports, "after the first answer a run talks to its receiver"
        for run_id in run_ids:
            server.wait_for(
                lambda run_id=run_id: (server.run(run_id) or {}).get("status") == "finished",
                60,
                f"run {run_id} ingested",
            )
        wait_until(lambda: not list((store_dir / "inbox").glob("*/*.parquet")), 30, what="inbox")
        assert not list((tmp_path / "outbox").glob("*/*.parquet")), "every segment acknowledged"
    finally:
        stop_server(server)
    for run_id in run_ids:
        assert stored_rows(store_dir, run_id) == (STEPS, STEPS)


def test_a_stop_reaches_a_run_that_talks_to_a_receiver(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "store", tmp_path / "serve.log", extra_args=("--receivers", "1")
    )
    try:
        sink = HttpSink(server.base_url, Problems(), outbox=tmp_path / "outbox")
        with Monitor(run="stop via receiver", sink=sink, flush_interval=0.05) as mon:
            mon.log(0, loss=1.0)
            mon.flush()
            server.wait_for(lambda: server.run(mon.run_id), 30, "run known to the server")
            assert sink.address_for(mon.run_id) != server.base_url.rstrip("/")
            reply = server.http.post(
                server.url(f"api/v1/runs/{mon.run_id}/stop"),
                json={"reason": "enough"},
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
            for step in range(1, 2000):  # bounded: ~0.01 s a step, 20 s at most
                mon.log(step, loss=1.0)
                if mon.should_stop():
                    break
                time.sleep(0.01)
            assert mon.should_stop()
            assert mon.stop_reason == "enough"
            assert sink.address_for(mon.run_id) != server.base_url.rstrip("/")
    finally:
        stop_server(server)


def test_receivers_check_host_and_token_like_the_main_server(tmp_path: Path) -> None:
    token = "receiver-token"
    server = start_server(
        tmp_path / "store",
        tmp_path / "serve.log",
        extra_args=("--receivers", "1", "--token", token),
    )
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        (port,) = advertised(server, "known-run", **bearer)
        main_port = server.base_url.rstrip("/").rsplit(":", 1)[1]
        # Through a proxy or a port mapping (Host names another port): no receivers advertised.
        assert advertised(server, "known-run", Host="127.0.0.1:1", **bearer) == []
        receiver = f"http://127.0.0.1:{port}/"
        assert ingest(receiver, "some-run", 1).status_code == 401
        assert ingest(receiver, "some-run", 1, Authorization="Bearer wrong").status_code == 401
        assert ingest(receiver, "some-run", 1, Host="evil.example", **bearer).status_code == 421
        cross_site = {"Sec-Fetch-Site": "cross-site", **bearer}
        assert ingest(receiver, "some-run", 1, **cross_site).status_code == 403
        answer = ingest(receiver, "some-run", 1, **bearer)
        assert answer.status_code == 202, answer.text
        assert answer.json()["stop"] is False
        assert answer.json()["receivers"] == [port]
        control = f"{receiver}api/v1/runs/some-run/control"
        assert requests.get(control, timeout=10).status_code == 401
        assert requests.get(control, headers=bearer, timeout=10).json()["stop"] is False
        assert requests.get(f"{receiver}api/v1/runs", headers=bearer, timeout=10).status_code == 404
        assert main_port != str(port)
    finally:
        stop_server(server)


def test_no_receiver_outlives_the_main_process(tmp_path: Path) -> None:
    for ending in (signal.SIGTERM, signal.SIGKILL):
        server = start_server(
            tmp_path / f"store-{ending}", tmp_path / "serve.log", extra_args=("--receivers", "2")
        )
        try:
            pids = wait_until(
                lambda server=server: (
                    len(receiver_pids(server.process.pid)) == 2
                    and receiver_pids(server.process.pid)
                ),
                30,
                what="two receivers",
            )
            os.kill(server.process.pid, ending)
            server.process.wait(timeout=30)
            wait_until(
                lambda pids=pids: not any(alive(pid) for pid in pids),
                15,
                what=f"receivers gone after {ending!r}",
            )
        finally:
            stop_server(server)


def test_a_killed_receiver_is_started_again(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "store", tmp_path / "serve.log", extra_args=("--receivers", "1")
    )
    try:
        (port,) = advertised(server, "a-run")
        (first,) = wait_until(lambda: receiver_pids(server.process.pid), 30, what="receiver")
        os.kill(first, signal.SIGKILL)
        wait_until(
            lambda: [p for p in receiver_pids(server.process.pid) if p != first],
            30,
            what="a new receiver",
        )
        answer = server.wait_for(
            lambda: ingest(f"http://127.0.0.1:{port}/", "a-run", 1).status_code == 202,
            30,
            "the new receiver answering on the same port",
        )
        assert answer
    finally:
        stop_server(server)
