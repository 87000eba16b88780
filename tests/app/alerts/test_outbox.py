"""Recording alerts from ingested changes: once per (run, signal, state change, destination), red
verdicts and crashes, never history for a destination configured later; and the destinations'
parsing, wording and secrecy."""

from __future__ import annotations

import json
import math
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.app.store.test_health_ingest import drop
from tests.support.segments import metrics_segment
from trainlight.app.alerts.destinations import (
    DISCORD,
    SLACK,
    WEBHOOK,
    Alert,
    Filters,
    destination,
)
from trainlight.app.alerts.outbox import AlertOutbox
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.alerts import list_alerts
from trainlight.collectors.schema import StoreLayout

HOOK = destination("http://127.0.0.1:9/hook")
LATER = destination("https://hooks.slack.com/services/T0/B0/secret")


def nan_run(store: Store, run_id: str, status: str = "running") -> None:
    rows = [(step, "loss", 1.0) for step in range(5)] + [(5, "loss", math.nan), (6, "loss", 1.0)]
    drop(store, run_id, 0, metrics_segment(run_id, 0, rows, status=status, name=f"{run_id}'s"))


def recorded(store: Store) -> list[tuple[str, str, str, int | None, str]]:
    with store.read() as cur:
        found = list_alerts(cur)
    return sorted(
        (a["run_id"], a["signal"], a["state"], a["step"], a["destination"]) for a in found
    )


def test_a_red_verdict_is_recorded_once_per_destination_and_never_as_history(
    tmp_path: Path,
) -> None:
    store = Store(StoreLayout(tmp_path))
    try:
        nan_run(store, "before")  # ingested before the server started: history
        Ingester(store).ingest_pending()
        outbox = AlertOutbox(store, [HOOK])  # the server starts
        assert outbox.record() == 0
        nan_run(store, "after")
        Ingester(store).ingest_pending()
        assert outbox.record() == 1
        assert outbox.record() == 0  # nothing new: nothing twice
        restarted = AlertOutbox(store, [HOOK, LATER])  # LATER is new: it starts now
        assert restarted.record() == 0
        assert recorded(store) == [("after", "nonfinite", "red", 5, HOOK.label)]
        drop(store, "after", 1, metrics_segment("after", 1, [(7, "loss", 1.0)], status="crashed"))
        Ingester(store).ingest_pending()
        assert restarted.record() == 2  # the crash, to both
        assert ("after", "status", "crashed", 7, LATER.label) in recorded(store)
    finally:
        store.close()


def test_destinations_are_recognised_by_address_and_never_reveal_it() -> None:
    assert destination("https://hooks.slack.com/services/T/B/x").kind == SLACK
    assert destination("https://discord.com/api/webhooks/1/abc").kind == DISCORD
    assert destination("https://discord.com/channels/1").kind == WEBHOOK
    assert destination("http://10.0.0.5:8080/alerts").kind == WEBHOOK
    for bad in ("ftp://x/y", "hooks.slack.com/x", "http://", "x" * 3000):
        with pytest.raises(ValueError):
            destination(bad)
    slack = destination("https://hooks.slack.com/services/T/B/s3cr3t")
    assert "s3cr3t" not in slack.label and "s3cr3t" not in repr(slack)
    assert "s3cr3t" not in slack.redact("HTTP 404 at https://hooks.slack.com/services/T/B/s3cr3t")
    alert = Alert("r1", 'lm "big"', "nlp", "spike", "red", 1200, "diverged", "http://d/run/r1")
    text = json.loads(slack.payload(alert))["text"]
    assert text.startswith('trainlight: run lm "big" (nlp) spike turned red at step 1,200')
    assert text.endswith("http://d/run/r1")
    discord = json.loads(destination("https://discord.com/api/webhooks/1/t").payload(alert))
    assert discord["content"] == text
    generic = json.loads(destination("http://x/h").payload(alert))
    assert (generic["signal"], generic["step"], generic["url"]) == (
        "spike",
        1200,
        "http://d/run/r1",
    )


def test_alerts_test_says_which_destination_failed_and_why_without_its_address(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.support.webhook_receiver import receiving
    from trainlight.app.cli import main

    with receiving() as good, receiving("/s3cr3t", fail_first=1) as bad:
        code = main(["alerts", "test", "--alert-webhook", good.url, "--alert-webhook", bad.url])
        out = capsys.readouterr().out
        assert code == 1
        lines = out.splitlines()
        assert lines == [
            f"{destination(good.url).label}: sent",
            f"{destination(bad.url).label}: FAILED: HTTP 500 Internal Server Error",
        ]
        assert "s3cr3t" not in out
        (message,) = good.messages()
        assert message["signal"] == "test" and "alerts reach this destination" in message["text"]


def test_a_run_that_goes_stale_is_said_once_and_again_only_after_it_resumed(
    tmp_path: Path,
) -> None:
    """No update for `stale_after` (a hung or killed process the server cannot see end): one
    alert per (run, last step); a run that was stale before the server started is history."""
    stale_after = timedelta(seconds=2)
    store = Store(StoreLayout(tmp_path))
    try:
        old = time.time() - 60
        drop(store, "old", 0, metrics_segment("old", 0, [(0, "loss", 1.0)], sent_at=old))
        Ingester(store).ingest_pending()
        quiet = destination("http://127.0.0.1:9/q", Filters(stale=False))
        outbox = AlertOutbox(store, [HOOK, quiet], stale_after)  # the server starts
        drop(store, "hung", 0, metrics_segment("hung", 0, [(0, "loss", 1.0), (1, "loss", 0.9)]))
        Ingester(store).ingest_pending()
        assert outbox.record() == 0  # fresh
        time.sleep(2.5)
        assert outbox.record() == 1 and outbox.record() == 0
        drop(store, "hung", 1, metrics_segment("hung", 1, [(2, "loss", 0.8), (3, "loss", 0.7)]))
        Ingester(store).ingest_pending()
        time.sleep(2.5)
        assert outbox.record() == 1  # stale again, at a later step
        assert recorded(store) == [
            ("hung", "status", "stale", 1, HOOK.label),
            ("hung", "status", "stale", 3, HOOK.label),
        ]  # not "old" (stale before the start), nothing to `quiet` (stale = false)
        with store.read() as cur:
            assert all(a["reason"].startswith("no update since ") for a in list_alerts(cur))
    finally:
        store.close()


def test_alerts_of_a_destination_no_longer_configured_wait_out_of_the_way(
    tmp_path: Path,
) -> None:
    from trainlight.app.alerts.sender import AlertSender

    store = Store(StoreLayout(tmp_path))
    try:
        outbox = AlertOutbox(store, [LATER])  # a server that had LATER configured
        nan_run(store, "r")
        Ingester(store).ingest_pending()
        assert outbox.record() == 1
        sender = AlertSender(store, [HOOK], "http://d")  # restarted without it
        assert sender._due() == [] and sender.send_due() == 0
        with store.read() as cur:
            assert [a["status"] for a in list_alerts(cur)] == ["pending"]  # kept for it
    finally:
        store.close()
