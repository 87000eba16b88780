"""Delivering `alerts` rows: a thread of its own, retries with backoff, a rate per destination.

The thread wakes every `poll` seconds or when told (after an ingest pass recorded alerts), reads
the `pending` rows whose next attempt is due, and posts each to its destination with a short
timeout. A 2xx answer marks the row `sent`; anything else (refused, timed out, a 5xx, a 429)
keeps it `pending` with `attempts` + 1, its error (the URL redacted) and a next attempt
`backoff` × 2^attempts later (capped), until `max_attempts`, when it is `failed`. At most one
message per `min_gap` seconds goes to one destination (Slack allows about one a second), so a
burst of red runs queues rather than getting the webhook disabled. A dead or hanging receiver
costs this thread its timeouts and nothing else: ingest only writes rows.
"""

from __future__ import annotations

import ipaddress
import logging
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

from trainlight.app.alerts.destinations import (
    TEST,
    Alert,
    Destination,
    Mail,
    subject_of,
    text_of,
)
from trainlight.app.alerts.outbox import NO_STEP, AlertOutbox
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.read.queries import DEFAULT_STALE_AFTER

log = logging.getLogger("trainlight.alerts")
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class SendSettings:
    timeout: float = 5.0  # seconds per attempt
    backoff: float = 2.0  # seconds before the first retry; doubles each time
    max_backoff: float = 300.0
    max_attempts: int = 10
    min_gap: float = 1.0  # seconds between two messages to one destination
    poll: float = 2.0  # seconds between looks for due rows
    batch: int = 50  # rows read per look


class AlertSender:
    def __init__(
        self,
        store: Store,
        destinations: Sequence[Destination],
        base_url: str,
        settings: SendSettings = SendSettings(),
        stale_after: timedelta = DEFAULT_STALE_AFTER,
    ) -> None:
        self.store, self.settings = store, settings
        self.destinations = {d.label: d for d in destinations}
        self.outbox = AlertOutbox(store, destinations, stale_after)  # before the first pass
        self.base_url = base_url.rstrip("/")
        self._wake = threading.Event()
        self._last_sent: dict[str, float] = {}

    # -- the ingester's thread ------------------------------------------------------------
    def after_ingest(self) -> None:
        """Record the alerts of what the pass ingested; wake the sender if there are any."""
        if self.outbox.record():
            self._wake.set()

    # -- the sender's thread --------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.send_due(stop)
            except Exception:
                log.exception("alert delivery pass failed; retrying")
            self._wake.wait(self.settings.poll)
            self._wake.clear()

    def send_due(self, stop: threading.Event | None = None) -> int:
        """Try every due row once; how many were sent."""
        sent = 0
        for row in self._due():
            if stop is not None and stop.is_set():
                break
            sent += self._deliver(*row)
        return sent

    def _due(self) -> list[tuple]:
        with self.store.read() as cur:
            return cur.execute(
                """SELECT a.run_id, a.signal, a.state, a.step, a.destination, a.reason,
                          a.attempts, coalesce(r.name, a.run_id), coalesce(r.project, '')
                   FROM alerts a LEFT JOIN runs r USING (run_id)
                   WHERE a.status = 'pending' AND a.next_attempt <= ?
                   AND list_contains(?::VARCHAR[], a.destination)
                   ORDER BY a.created_at, a.run_id LIMIT ?""",
                # only destinations configured now: another's rows wait for it, out of the way
                [utc_naive(), list(self.destinations), self.settings.batch],
            ).fetchall()

    def _deliver(
        self,
        run_id: str,
        signal: str,
        state: str,
        step: int,
        label: str,
        reason: str,
        attempts: int,
        run_name: str,
        project: str,
    ) -> int:
        key = [run_id, signal, state, step, label]
        dest = self.destinations[label]
        self._keep_rate(label)
        alert = Alert(
            run_id, run_name, project, signal, state, None if step == NO_STEP else step,
            reason or "", f"{self.base_url}/run/{run_id}",
        )  # fmt: skip
        error = post(dest, alert, self.settings.timeout)
        now = utc_naive()
        with self.store.write() as cur:
            if error is None:
                cur.execute(
                    """UPDATE alerts SET status = 'sent', attempts = ?, sent_at = ?,
                       last_error = NULL WHERE run_id = ? AND signal = ? AND state = ?
                       AND step = ? AND destination = ?""",
                    [attempts + 1, now, *key],
                )
                return 1
            tries = attempts + 1
            delay = min(self.settings.backoff * 2 ** (tries - 1), self.settings.max_backoff)
            status = "failed" if tries >= self.settings.max_attempts else "pending"
            cur.execute(
                """UPDATE alerts SET status = ?, attempts = ?, last_error = ?, next_attempt = ?
                   WHERE run_id = ? AND signal = ? AND state = ? AND step = ?
                   AND destination = ?""",
                [status, tries, error, now + timedelta(seconds=delay), *key],
            )
        log.warning("alert to %s failed (attempt %d): %s", label, tries, error)
        return 0

    def _keep_rate(self, label: str) -> None:
        last = self._last_sent.get(label)
        if last is not None:
            wait = self.settings.min_gap - (time.monotonic() - last)
            if wait > 0:
                time.sleep(wait)
        self._last_sent[label] = time.monotonic()


# Proxies from the environment, as for any web request; never for this machine.
_PROXIED = urllib.request.build_opener()
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(dest: Destination, alert: Alert, timeout: float) -> str | None:
    """Send one alert: None when the destination took it (a 2xx, or the SMTP server accepted
    it); otherwise why not, the URL and any password redacted."""
    if dest.mail is not None:
        return _mail(dest, dest.mail, alert, timeout)
    request = urllib.request.Request(
        dest.url,
        data=dest.payload(alert),
        headers={"Content-Type": "application/json", "User-Agent": "trainlight-alerts"},
        method="POST",
    )
    opener = _DIRECT if _loopback(dest.url) else _PROXIED
    try:
        with opener.open(request, timeout=timeout) as answer:
            answer.read(4096)
            return None
    except urllib.error.HTTPError as exc:
        error = f"HTTP {exc.code} {exc.reason}"
    except Exception as exc:  # refused, timed out, DNS, TLS: all the same to a retry
        error = f"{type(exc).__name__}: {exc}"
    return dest.redact(error)[:MAX_ERROR_CHARS]


def _mail(dest: Destination, mail: Mail, alert: Alert, timeout: float) -> str | None:
    message = EmailMessage()
    message["Subject"] = subject_of(alert)
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.to)
    message.set_content(text_of(alert) + "\n")
    try:
        connect = smtplib.SMTP_SSL if mail.tls == "ssl" else smtplib.SMTP
        with connect(mail.host, mail.port, timeout=timeout) as smtp:
            if mail.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if mail.user:
                smtp.login(mail.user, mail.password)
            smtp.send_message(message)
        return None
    except Exception as exc:  # refused, timed out, auth, TLS: all the same to a retry
        return dest.redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_CHARS]


def send_test(
    destinations: Sequence[Destination], base_url: str, timeout: float = 10.0
) -> list[tuple[str, str | None]]:
    """`trainlight alerts test`: one test message to each destination; (label, error or None)."""
    alert = Alert("test", "test", "", TEST, "ok", None, "", base_url.rstrip("/") + "/")
    return [(dest.label, post(dest, alert, timeout)) for dest in destinations]


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
