"""Alerts end to end: a real `trainlight serve` with `--alert-webhook`s, real webhook receivers on
127.0.0.1, and a real training that turns red."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support.server import LiveServer, start_server, stop_server
from tests.support.trainings import train_diverging
from tests.support.webhook_receiver import receiving

PUBLIC = "http://dash.example:8050"
SECRET = "/hooks/T000/B000/s3cr3t-token"


def alerts(server: LiveServer, **params: Any) -> list[dict[str, Any]]:
    reply = server.http.get(server.url("api/v1/alerts"), params=params, timeout=10)
    reply.raise_for_status()
    return list(reply.json()["alerts"])


def red_signals(server: LiveServer, run_id: str) -> set[str]:
    run = server.run(run_id) or {}
    return {signal for signal, state in run.get("health", {}).items() if state == "red"}


def serve(tmp_path: Path, name: str, hooks: list[str]) -> LiveServer:
    args: list[str] = ["--public-url", PUBLIC]
    for hook in hooks:
        args += ["--alert-webhook", hook]
    return start_server(tmp_path / "store", tmp_path / f"{name}.log", extra_args=tuple(args))


def test_a_run_turning_red_alerts_each_destination_once_with_its_link(tmp_path: Path) -> None:
    with receiving() as plain, receiving(SECRET) as secret:
        server = serve(tmp_path, "first", [plain.url, secret.url])
        try:
            run_id = train_diverging(tmp_path / "store", 'diverging lr=0.5 "quoted"/run')
            server.wait_for(lambda: red_signals(server, run_id), 30, "the run turns red")
            reds = red_signals(server, run_id)
            for receiver in (plain, secret):
                server.wait_for(
                    lambda r=receiver: {m["signal"] for m in r.messages()} >= reds,
                    30,
                    "an alert per red signal at each destination",
                )
            time.sleep(3)  # more ingest passes and sender looks: nothing repeats
            for receiver in (plain, secret):
                messages = receiver.messages()
                assert sorted(m["signal"] for m in messages) == sorted(reds)  # once each
                for message in messages:
                    assert message["run_id"] == run_id and message["state"] == "red"
                    assert message["url"] == f"{PUBLIC}/run/{run_id}"
                    assert message["run_name"] == 'diverging lr=0.5 "quoted"/run'
                    assert message["url"] in message["text"] and message["reason"]
            recorded = alerts(server, run_id=run_id)
            assert len(recorded) == 2 * len(reds)
            assert {a["status"] for a in recorded} == {"sent"}
            assert len({a["destination"] for a in recorded}) == 2
        finally:
            stop_server(server)
        # A restart (same store, same destinations) sends nothing again.
        again = serve(tmp_path, "again", [plain.url, secret.url])
        try:
            time.sleep(4)
            assert len(alerts(again)) == 2 * len(reds)
        finally:
            stop_server(again)
        assert len(plain.messages()) == len(secret.messages()) == len(reds)
        for text in ((tmp_path / "first.log").read_text(), (tmp_path / "again.log").read_text()):
            assert "s3cr3t" not in text
        assert "s3cr3t" not in str(recorded)


def test_a_receiver_that_fails_then_recovers_gets_the_alert_after_retries(
    tmp_path: Path,
) -> None:
    with receiving(fail_first=2) as flaky:
        server = serve(tmp_path, "flaky", [flaky.url])
        try:
            run_id = train_diverging(tmp_path / "store", "diverging")
            server.wait_for(lambda: red_signals(server, run_id), 30, "the run turns red")

            def all_sent() -> list[dict[str, Any]] | None:
                found = alerts(server, run_id=run_id)
                return found if found and {a["status"] for a in found} == {"sent"} else None

            recorded = server.wait_for(all_sent, 60, "every alert sent after two failures")
            assert sum(a["attempts"] - 1 for a in recorded) == 2  # the two 500s, retried
            assert len(flaky.messages()) == len(recorded) == len(red_signals(server, run_id))
        finally:
            stop_server(server)
