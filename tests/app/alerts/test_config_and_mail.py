"""The alerts file (destinations, filters, e-mail), filters applied when alerts are recorded, and
e-mail delivered to a real local SMTP server (aiosmtpd) from a real training that turned red."""

from __future__ import annotations

import email
import math
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.app.store.test_health_ingest import drop
from tests.support.segments import metrics_segment
from tests.support.trainings import train_diverging
from tests.support.webhook_receiver import ingest_and_deliver
from trainlight.app.alerts.config import AlertsFileError, load_alerts_file
from trainlight.app.alerts.destinations import EMAIL, SLACK, destination
from trainlight.app.alerts.outbox import AlertOutbox
from trainlight.app.alerts.sender import AlertSender, SendSettings
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.alerts import list_alerts
from trainlight.collectors.schema import StoreLayout

PASSWORD = "pw-s3cr3t"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    return path


def test_the_alerts_file_gives_destinations_with_filters_and_mail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PW", PASSWORD)
    found = load_alerts_file(
        write(
            tmp_path,
            """
[[destination]]
webhook = "https://hooks.slack.com/services/T/B/x"
projects = ["nlp"]
signals = ["spike"]
states = ["red", "amber"]
crashes = false

[[destination]]
email = "oncall@example.com"
smtp_host = "127.0.0.1"
smtp_port = 2525
smtp_tls = "none"
smtp_user = "trainlight"
smtp_password_env = "SMTP_PW"
""",
        )
    )
    slack, mail = found
    assert slack.kind == SLACK and slack.filters.projects == ("nlp",)
    assert slack.filters.states == ("red", "amber") and not slack.filters.crashes
    assert mail.kind == EMAIL and mail.mail is not None and mail.mail.password == PASSWORD
    assert mail.filters.states == ("red",) and mail.filters.crashes
    assert PASSWORD not in repr(mail) and PASSWORD not in mail.label


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[destination]]\nwebhook = "https://x/h"\nsecret_key = "zzz-123"', "unknown keys"),
        ('[[destination]]\nwebhook = "https://x/h"\nstates = ["green"]', "states must be"),
        ('[[destination]]\nwebhook = "https://x/h"\nemail = "a@b"', "exactly one"),
        ('[[destination]]\nemail = "a@b"\nsmtp_host = "h"\nsmtp_password_env = "NOPE_X"', "NOPE_X"),
        ('[[destination]]\nwebhook = "ftp://zzz-123/x"', "http:// or https://"),
        ("destination = 3", "no [[destination]]"),
        ("[[destination", "not TOML"),
    ],
)
def test_a_bad_alerts_file_is_refused_naming_the_key_never_the_value(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(AlertsFileError, match=re.escape(message)) as raised:
        load_alerts_file(write(tmp_path, text))
    assert "zzz-123" not in str(raised.value)


def test_filters_choose_the_runs_signals_and_states_each_destination_hears_of(
    tmp_path: Path,
) -> None:
    nlp_spikes = destination(
        "http://127.0.0.1:9/a", _filters(projects=("nlp",), signals=("spike",))
    )
    nlp_all = destination("http://127.0.0.1:9/b", _filters(projects=("nlp",), crashes=False))
    tagged = destination("http://127.0.0.1:9/c", _filters(tags=("prod",)))
    store = Store(StoreLayout(tmp_path))
    try:
        outbox = AlertOutbox(store, [nlp_spikes, nlp_all, tagged])
        for run_id, project, tags in (
            ("a", "nlp", ["prod"]),
            ("b", "vision", []),
            ("c", "nlp", []),
        ):
            rows = [(s, "loss", 1.0) for s in range(5)] + [(5, "loss", math.nan), (6, "loss", 1.0)]
            drop(store, run_id, 0, metrics_segment(run_id, 0, rows, project=project, tags=tags))
        drop(
            store,
            "c",
            1,
            metrics_segment("c", 1, [(7, "loss", 1.0)], project="nlp", status="crashed"),
        )
        Ingester(store).ingest_pending()
        outbox.record()
        with store.read() as cur:
            got = {(a["destination"], a["run_id"], a["signal"]) for a in list_alerts(cur)}
        assert got == {
            (nlp_spikes.label, "c", "status"),  # no spike verdict; nlp's crash (crashes=true)
            (nlp_all.label, "a", "nonfinite"),  # nlp's verdicts; no crash (crashes=false)
            (nlp_all.label, "c", "nonfinite"),
            (tagged.label, "a", "nonfinite"),  # the prod-tagged run only
        }
    finally:
        store.close()


def _filters(**kwargs: Any) -> Any:
    from trainlight.app.alerts.destinations import Filters

    return Filters(**kwargs)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = data is not None and data.login == b"trainlight" and data.password == PASSWORD.encode()
    return AuthResult(success=ok)


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=_authenticate,
        auth_require_tls=False, auth_exclude_mechanism=["LOGIN"],
    )  # fmt: skip
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_a_run_turning_red_sends_one_email_per_red_signal_with_the_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PW", PASSWORD)
    with smtp_server() as (inbox, port):
        entry = f"""
[[destination]]
email = ["oncall@example.com", "ml@example.com"]
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_tls = "none"
smtp_user = "trainlight"
smtp_password_env = "SMTP_PW"
smtp_from = "trainlight@example.com"
"""
        (good,) = load_alerts_file(write(tmp_path, entry))
        monkeypatch.setenv("SMTP_BAD", "wrong-password")
        bad_entry = entry.replace("SMTP_PW", "SMTP_BAD").replace("ml@", "other@")
        (wrong,) = load_alerts_file(write(tmp_path, bad_entry))
        store = Store(StoreLayout(tmp_path / "store"))
        try:
            sender = AlertSender(
                store, [good, wrong], "http://dash:8050", SendSettings(min_gap=0, timeout=3)
            )
            run_id = train_diverging(tmp_path / "store", "diverging")
            recorded = ingest_and_deliver(store, sender)
        finally:
            store.close()
    sent = [a for a in recorded if a["destination"] == good.label]
    failed = [a for a in recorded if a["destination"] == wrong.label]
    assert sent and {a["status"] for a in sent} == {"sent"}
    assert len(inbox.messages) == len(sent)  # one e-mail per red signal, to both addresses
    for message in inbox.messages:
        assert message["To"] == "oncall@example.com, ml@example.com"
        assert message["Subject"].startswith("[trainlight] diverging: ")
        assert f"http://dash:8050/run/{run_id}" in message.get_payload()
    assert failed and all(a["status"] == "pending" and a["attempts"] == 1 for a in failed)
    assert all(a["last_error"] for a in failed)  # refused (535) or cut off: said, retried
    assert not any(PASSWORD in str(a) for a in recorded)
