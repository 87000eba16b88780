"""`mon.alert()` from training code: carried by the next segment, stored once at ingest, routed
to the alert destinations (their filters too) like a red verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.webhook_receiver import ingest_and_deliver, receiving
from trainlight.app.alerts.destinations import Filters, destination
from trainlight.app.alerts.sender import AlertSender, SendSettings
from trainlight.app.store.database import Store
from trainlight.collectors import Monitor
from trainlight.collectors.run_header import RunHeader
from trainlight.collectors.schema import StoreLayout


def test_an_alert_from_training_code_reaches_each_destination_that_takes_them(
    tmp_path: Path,
) -> None:
    with receiving() as hook, receiving("/quiet") as quiet:
        store = Store(StoreLayout(tmp_path / "store"))
        try:
            takes = destination(hook.url)
            refuses = destination(quiet.url, Filters(user_alerts=False))
            sender = AlertSender(store, [takes, refuses], "http://dash", SendSettings(min_gap=0))
            with Monitor("resumed", store=tmp_path / "store", project="nlp") as mon:
                for step in range(5):
                    mon.log(step, loss=1.0 / (step + 1))
                mon.alert("checkpoint restored", "from step 100", level="info")
                mon.alert("x" * 500, level="loud")  # a bad level: reported, skipped
                run_id = mon.run_id
                problems = mon.problems.snapshot()
            recorded = ingest_and_deliver(store, sender)
        finally:
            store.close()
    assert [(a["signal"], a["state"], a["step"]) for a in recorded] == [
        ("alert:checkpoint restored", "info", 4)
    ]
    assert recorded[0]["destination"] == takes.label and recorded[0]["status"] == "sent"
    (message,) = hook.messages()
    assert message["run_id"] == run_id and message["url"] == f"http://dash/run/{run_id}"
    assert "alert [info] at step 4: checkpoint restored: from step 100" in message["text"]
    assert quiet.messages() == []
    assert "bad_alert" in problems


@pytest.mark.parametrize(
    "alert",
    [
        {"title": "", "text": "", "level": "warn", "step": 1, "at": 1.0},
        {"title": "t", "text": "", "level": "loud", "step": 1, "at": 1.0},
        {"title": "t", "text": "x" * 2001, "level": "warn", "step": 1, "at": 1.0},
        {"title": "t", "text": "", "level": "warn", "step": "1", "at": 1.0},
        {"title": "t", "text": "", "level": "warn", "step": 1},
    ],
)
def test_a_segment_with_a_malformed_alert_is_refused(alert: dict[str, object]) -> None:
    header = RunHeader(run_id="r1", seq=0, name="n", alerts=(alert,))
    with pytest.raises(ValueError, match="alert"):
        RunHeader.from_bytes(header.to_bytes())
    ok = RunHeader(run_id="r1", seq=0, name="n")
    assert b"alerts" not in ok.to_bytes()  # absent unless used: older servers take it
