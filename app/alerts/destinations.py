"""Where alerts go: Slack and Discord incoming webhooks (recognised by their address) and any
other URL as a generic JSON webhook; and what each is sent.

A webhook URL is a secret (whoever has it can post to the channel): it is held here only. The
store, the API, pages and logs name a destination by its `label`: its kind and a short hash of
its URL, which tells destinations apart without revealing them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

SLACK, DISCORD, WEBHOOK, EMAIL = "slack", "discord", "webhook", "email"
TEST = "test"  # the signal of `trainlight alerts test`'s message
USER_ALERT = "alert:"  # the signal of a mon.alert() message: this and its title
SLACK_HOSTS = ("hooks.slack.com",)
DISCORD_HOSTS = ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")
DISCORD_MAX_CHARS = 2000  # Discord refuses longer content
MAX_URL_CHARS = 2048


@dataclass(frozen=True)
class Alert:
    """One state change of one run, as a message says it."""

    run_id: str
    run_name: str
    project: str
    signal: str  # a health signal, or "status" for a run that crashed
    state: str  # "red", or the run's status ("crashed")
    step: int | None
    reason: str
    link: str  # the run page


@dataclass(frozen=True)
class Filters:
    """Which changes a destination is told about (empty: any)."""

    projects: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # a run with any of them
    signals: tuple[str, ...] = ()
    states: tuple[str, ...] = ("red",)  # verdicts turning to these: red, amber
    crashes: bool = True  # runs that crash
    stale: bool = True  # running runs with no update for the server's stale time (60 s)
    user_alerts: bool = True  # mon.alert() messages from training code


@dataclass(frozen=True)
class Mail:
    """An e-mail destination's SMTP server and addresses; `password` is a secret."""

    to: tuple[str, ...]
    host: str
    port: int = 587
    sender: str = "trainlight@localhost"
    user: str = ""
    password: str = field(default="", repr=False)
    tls: str = "starttls"  # "starttls", "ssl" or "none"


@dataclass(frozen=True)
class Destination:
    kind: str
    url: str = field(repr=False)  # a secret: never printed, stored or served
    filters: Filters = Filters()
    mail: Mail | None = None

    @property
    def label(self) -> str:
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:10]
        return f"{self.kind}-{digest}"

    def redact(self, text: str) -> str:
        """`text` (an error message) with the URL, its path and any password taken out."""
        parts = urlsplit(self.url)
        secrets = [self.url, parts.path, parts.query]
        if self.mail is not None:
            secrets.append(self.mail.password)
        for secret in secrets:
            if secret and secret != "/":
                text = text.replace(secret, "…")
        return text

    def payload(self, alert: Alert) -> bytes:
        if self.kind == SLACK:
            body: dict[str, Any] = {"text": text_of(alert)}
        elif self.kind == DISCORD:
            body = {"content": text_of(alert)[:DISCORD_MAX_CHARS]}
        else:
            body = {
                "run_id": alert.run_id,
                "run_name": alert.run_name,
                "project": alert.project,
                "signal": alert.signal,
                "state": alert.state,
                "step": alert.step,
                "reason": alert.reason,
                "url": alert.link,
                "text": text_of(alert),
            }
        return json.dumps(body).encode()


def destination(url: str, filters: Filters = Filters()) -> Destination:
    """The destination of a webhook URL; ValueError for anything but an http(s) URL."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"an alert webhook URL is at most {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an alert webhook must be an http:// or https:// URL")
    host = parts.hostname.lower()
    if host in SLACK_HOSTS:
        return Destination(SLACK, url, filters)
    if host in DISCORD_HOSTS and parts.path.startswith("/api/webhooks/"):
        return Destination(DISCORD, url, filters)
    return Destination(WEBHOOK, url, filters)


def email_destination(mail: Mail, filters: Filters = Filters()) -> Destination:
    """An e-mail destination; its label hashes the server and the addresses, not the password."""
    if not mail.to or not mail.host:
        raise ValueError("an e-mail destination needs `email` addresses and an `smtp_host`")
    if mail.tls not in ("starttls", "ssl", "none"):
        raise ValueError(f"smtp_tls must be starttls, ssl or none, got {mail.tls!r}")
    where = f"smtp://{mail.host}:{mail.port}/{','.join(mail.to)}"
    return Destination(EMAIL, where, filters, mail)


def subject_of(alert: Alert) -> str:
    what = alert.state if alert.signal == "status" else f"{alert.signal} {alert.state}"
    return f"[trainlight] {alert.run_name}: {what}"[:200]


def text_of(alert: Alert) -> str:
    """One line a person reads on a phone: what, where, why, and the link."""
    if alert.signal == TEST:
        return f"trainlight: a test message; alerts reach this destination ({alert.link})"
    if alert.signal.startswith(USER_ALERT):
        title = alert.signal[len(USER_ALERT) :]
        at = f" at step {alert.step:,}" if alert.step is not None else ""
        project = f" ({alert.project})" if alert.project else ""
        text = f": {alert.reason}" if alert.reason else ""
        return (
            f"trainlight: run {alert.run_name}{project} alert [{alert.state}]{at}: "
            f"{title}{text} {alert.link}"
        )
    what = alert.state if alert.signal == "status" else f"{alert.signal} turned {alert.state}"
    what = "went stale" if what == "stale" else what
    at = f" at step {alert.step:,}" if alert.step is not None else ""
    project = f" ({alert.project})" if alert.project else ""
    reason = f": {alert.reason}" if alert.reason else ""
    return f"trainlight: run {alert.run_name}{project} {what}{at}{reason} {alert.link}"
