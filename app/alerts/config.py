"""`trainlight serve --alerts alerts.toml`: where alerts go and which changes each destination
is told about.

    [[destination]]
    webhook = "https://hooks.slack.com/services/T…/B…/…"  # Slack, Discord or any JSON webhook
    projects = ["nlp"]          # only these projects (default: all); also groups, tags
    signals = ["spike", "nonfinite"]  # only these signals (default: all)
    states = ["red", "amber"]   # verdicts turning to these (default: ["red"])
    crashes = true              # runs that crash (default: true)
    stale = true                # running runs with no update for 60 s (default: true)
    user_alerts = true          # mon.alert() messages from training code (default: true)

    [[destination]]
    email = ["oncall@example.com"]
    smtp_host = "smtp.example.com"
    smtp_port = 587                           # default 587
    smtp_tls = "starttls"                     # starttls (default), ssl or none
    smtp_user = "trainlight"
    smtp_password_env = "TRAINLIGHT_SMTP_PASSWORD"  # read from the environment (or smtp_password)
    smtp_from = "trainlight@example.com"

A stall is the `progress` signal turning red and an auto-prune a red `prune_on` signal, so both
are verdicts. Unknown keys, wrong types and unknown states are refused with the key's name (never
its value: it may be a secret).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainlight.app.alerts.destinations import (
    Destination,
    Filters,
    Mail,
    destination,
    email_destination,
)

ALERT_STATES = ("red", "amber")
MAX_FILE_BYTES = 1 << 20
_FILTER_KEYS = (
    "projects", "groups", "tags", "signals", "states", "crashes", "stale", "user_alerts",
)  # fmt: skip
_WEBHOOK_KEYS = {"webhook", *_FILTER_KEYS}
_EMAIL_KEYS = {
    "email", "smtp_host", "smtp_port", "smtp_tls", "smtp_user", "smtp_password",
    "smtp_password_env", "smtp_from", *_FILTER_KEYS,
}  # fmt: skip


class AlertsFileError(ValueError):
    """The alerts file cannot be used; the message names the entry and key at fault."""


def load_alerts_file(path: str | Path) -> list[Destination]:
    file = Path(path)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise AlertsFileError(f"{file}: larger than {MAX_FILE_BYTES} bytes")
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AlertsFileError(f"{file}: cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AlertsFileError(f"{file}: not TOML: {exc}") from None
    unknown = set(data) - {"destination"}
    if unknown:
        raise AlertsFileError(f"{file}: unknown top-level keys {sorted(unknown)}")
    entries = data.get("destination", [])
    if not isinstance(entries, list) or not entries:
        raise AlertsFileError(f"{file}: no [[destination]] entries")
    return [_entry(entry, f"{file}: destination {i + 1}") for i, entry in enumerate(entries)]


def _entry(entry: Any, where: str) -> Destination:
    if not isinstance(entry, Mapping):
        raise AlertsFileError(f"{where}: not a table")
    if ("webhook" in entry) == ("email" in entry):
        raise AlertsFileError(f"{where}: needs exactly one of `webhook` or `email`")
    allowed = _WEBHOOK_KEYS if "webhook" in entry else _EMAIL_KEYS
    unknown = set(entry) - allowed
    if unknown:
        raise AlertsFileError(f"{where}: unknown keys {sorted(unknown)}")
    filters = _filters(entry, where)
    try:
        if "webhook" in entry:
            return destination(_text(entry, "webhook", where), filters)
        return email_destination(_mail(entry, where), filters)
    except ValueError as exc:
        raise AlertsFileError(f"{where}: {exc}") from None


def _filters(entry: Mapping[str, Any], where: str) -> Filters:
    flags = ("crashes", "stale", "user_alerts")
    lists = {key: _strings(entry, key, where) for key in _FILTER_KEYS if key not in flags}
    states = lists.pop("states") or ("red",)
    bad = [s for s in states if s not in ALERT_STATES]
    if bad:
        raise AlertsFileError(f"{where}: states must be among {list(ALERT_STATES)}")
    for flag in flags:
        if not isinstance(entry.get(flag, True), bool):
            raise AlertsFileError(f"{where}: {flag} must be true or false")
    return Filters(
        states=states,
        crashes=entry.get("crashes", True),
        stale=entry.get("stale", True),
        user_alerts=entry.get("user_alerts", True),
        **lists,
    )


def _mail(entry: Mapping[str, Any], where: str) -> Mail:
    to = entry["email"]
    to = (to,) if isinstance(to, str) else _strings(entry, "email", where)
    password = entry.get("smtp_password", "")
    if "smtp_password_env" in entry:
        name = _text(entry, "smtp_password_env", where)
        if name not in os.environ:
            raise AlertsFileError(f"{where}: ${name} (smtp_password_env) is not set")
        password = os.environ[name]
    port = entry.get("smtp_port", 587)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise AlertsFileError(f"{where}: smtp_port must be a port number")
    if not isinstance(password, str):
        raise AlertsFileError(f"{where}: smtp_password must be a string")
    return Mail(
        to=tuple(to),
        host=_text(entry, "smtp_host", where),
        port=port,
        sender=str(entry.get("smtp_from", "trainlight@localhost")),
        user=str(entry.get("smtp_user", "")),
        password=password,
        tls=str(entry.get("smtp_tls", "starttls")),
    )


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise AlertsFileError(f"{where}: {key} must be a non-empty string")
    return value


def _strings(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AlertsFileError(f"{where}: {key} must be a list of strings")
    return tuple(value)
