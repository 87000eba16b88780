"""A run's identity and self-description, as every segment carries it.

Names are free text (quotes, slashes, emoji) and stay data; `run_id` is what appears in paths and
URLs. The header rides in each segment's Parquet metadata, so every segment is self-describing.
Part of the store contract re-exported by `trainlight.collectors.schema`.
"""

from __future__ import annotations

import json
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.wire import ROLE_NAMES

SEGMENT_FORMAT = 1
RUN_STATUSES = ("running", "finished", "crashed", "stopped")
TERMINAL_STATUSES = ("finished", "crashed", "stopped")
# `stale` is never stored: it is how a `running` run without a recent heartbeat is shown.
STALE = "stale"

# Caps on the free text a header carries (checked by the collector when the run is described,
# and by the server before it acknowledges a segment): every segment repeats the header, and
# every dashboard row shows it.
MAX_LABEL_CHARS = 200  # name, project, group, each tag, each role's key
MAX_TAGS = 64
MAX_CONFIG_BYTES = 64 * 1024  # the config as JSON
_RUN_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


def _check_label(what: str, text: str) -> None:
    if len(text) > MAX_LABEL_CHARS:
        raise ValueError(f"{what} is {len(text)} characters long, at most {MAX_LABEL_CHARS}")


def make_run_id(name: str) -> str:
    """A URL- and path-safe id for a run: a readable slug of the name plus 8 random hex digits.

    Names are free text (quotes, slashes, emoji); they are stored as data, while the id is what
    appears in paths and URLs. The random suffix keeps ids unique when names repeat.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _SLUG_DROP.sub("-", ascii_name.lower()).strip("-")[:40].strip("-") or "run"
    return f"{slug}-{secrets.token_hex(4)}"


def is_valid_run_id(run_id: str) -> bool:
    """True for ids that are safe as a single path component and URL segment."""
    return isinstance(run_id, str) and _RUN_ID_RE.fullmatch(run_id) is not None


def check_run_id(run_id: str) -> str:
    if not is_valid_run_id(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: use 1-80 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit"
        )
    return run_id


@dataclass(frozen=True)
class RunHeader:
    """What a segment says about its run. Sent whole with every segment (a few hundred bytes)."""

    run_id: str
    seq: int
    name: str
    project: str = ""
    group: str = ""
    tags: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    status: str = "running"
    host: str = ""
    pid: int = 0
    started_at: float = 0.0  # unix seconds
    sent_at: float = 0.0  # unix seconds: the heartbeat
    dropped_rows: int = 0  # rows the collector discarded because its buffer was full (cumulative)
    stop_reason: str = ""  # why the run stopped, when status == "stopped"
    roles: Mapping[str, str] = field(default_factory=dict)  # e.g. {"adversary": "d_loss"}
    health: Mapping[str, Any] = field(default_factory=dict)  # HealthSettings overrides
    prune_on: tuple[str, ...] = ()  # signals whose red stops the run
    pid_namespace: str = ""  # boot id + pid namespace of `pid` (see process_namespace())
    total_steps: int | None = None  # the planned length, as `Monitor(total_steps=...)` declared
    # `mon.alert()` messages since the previous segment: {title, text, level, step, at}
    alerts: tuple[Mapping[str, Any], ...] = ()

    def planned_steps(self) -> int | None:
        """The declared length: `total_steps`, else a `total_steps`/`max_steps` config key."""
        if self.total_steps:
            return self.total_steps
        for key in ("total_steps", "max_steps"):
            value = self.config.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    def to_bytes(self) -> bytes:
        payload = asdict(self)
        payload["tags"] = list(self.tags)
        payload["prune_on"] = list(self.prune_on)
        payload["format"] = SEGMENT_FORMAT
        if self.alerts:
            payload["alerts"] = [dict(a) for a in self.alerts]
        else:  # absent unless used: a server from before alerts still takes the segment
            del payload["alerts"]
        return json.dumps(payload, default=str, allow_nan=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> RunHeader:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("segment header is not a JSON object")
        if data.pop("format", None) != SEGMENT_FORMAT:
            raise ValueError(f"unsupported segment format (expected {SEGMENT_FORMAT})")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown segment header fields: {sorted(unknown)}")
        tags = data.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError("run tags must be a list of strings")
        data["tags"] = tuple(tags)
        prune_on = data.get("prune_on", [])
        if not isinstance(prune_on, list) or not all(isinstance(p, str) for p in prune_on):
            raise ValueError("prune_on must be a list of signal names")
        data["prune_on"] = tuple(prune_on)
        alerts = data.get("alerts", [])
        if not isinstance(alerts, list):
            raise ValueError("alerts must be a list")
        data["alerts"] = tuple(alerts)
        return cls(**data).validated()

    def validated(self) -> RunHeader:
        check_run_id(self.run_id)
        seq = self.seq
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 10**18:
            raise ValueError(f"segment seq must be an integer in [0, 10**18), got {seq!r}")
        if self.status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {self.status!r}; expected one of {RUN_STATUSES}")
        if not isinstance(self.config, Mapping):
            raise ValueError("run config must be a JSON object")
        for name in ("name", "project", "group", "host", "stop_reason", "pid_namespace"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"run {name} must be a string")
        steps = self.total_steps
        if steps is not None and (type(steps) is not int or not 1 <= steps < 2**53):
            raise ValueError(f"total_steps must be an integer in [1, 2**53), got {steps!r}")
        for name in ("pid", "dropped_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
                raise ValueError(f"run {name} must be an integer in [0, 2**31), got {value!r}")
        self._validate_health()
        for name in ("started_at", "sent_at"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1e11:
                raise ValueError(f"run {name} must be unix seconds, got {value!r}")
        tags = self.tags
        if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
            raise ValueError("run tags must be a list of strings")
        self._check_sizes()
        check_alerts(self.alerts)
        return self

    def _check_sizes(self) -> None:
        for name in ("name", "project", "group"):
            _check_label(f"run {name}", getattr(self, name))
        if len(self.tags) > MAX_TAGS:
            raise ValueError(f"run tags: {len(self.tags)} tags, at most {MAX_TAGS} allowed")
        for tag in self.tags:
            _check_label("run tag", tag)
        for key in self.roles.values():
            _check_label("run role key", key)
        try:
            size = len(json.dumps(self.config, default=str).encode())
        except RecursionError:
            raise ValueError("run config is nested too deeply") from None
        if size > MAX_CONFIG_BYTES:
            raise ValueError(f"run config is {size} bytes as JSON, at most {MAX_CONFIG_BYTES}")

    def _validate_health(self) -> None:
        roles = self.roles
        if not isinstance(roles, Mapping) or not all(
            k in ROLE_NAMES and isinstance(v, str) for k, v in roles.items()
        ):
            raise ValueError(f"roles must map {ROLE_NAMES} to logged keys, got {roles!r}")
        # Here, not at import: importing the segment format must not load the health rules.
        from trainlight.collectors.health.registry import prunable

        allowed = prunable()
        unknown = [p for p in self.prune_on if p not in allowed]
        if unknown:
            raise ValueError(f"prune_on names unknown signals {unknown}; known: {allowed}")
        if not isinstance(self.health, Mapping):
            raise ValueError("health settings must be a JSON object")
        HealthSettings.from_dict(self.health)  # raises with the bad setting named


USER_ALERT_LEVELS = ("info", "warn", "error")
MAX_SEGMENT_ALERTS = 32  # mon.alert() messages per segment (more wait for the next one)
MAX_ALERT_TITLE, MAX_ALERT_TEXT = 200, 2000  # characters


def check_alerts(alerts: Any) -> None:
    """A header's `alerts`: at most MAX_SEGMENT_ALERTS {title, text, level, step, at} objects."""
    if not isinstance(alerts, (list, tuple)) or len(alerts) > MAX_SEGMENT_ALERTS:
        raise ValueError(f"alerts must be a list of at most {MAX_SEGMENT_ALERTS} objects")
    for alert in alerts:
        if not isinstance(alert, Mapping) or set(alert) != {"title", "text", "level", "step", "at"}:
            raise ValueError("an alert must have exactly title, text, level, step and at")
        title, text, level, step, at = (alert[k] for k in ("title", "text", "level", "step", "at"))
        if not isinstance(title, str) or not 0 < len(title) <= MAX_ALERT_TITLE:
            raise ValueError(f"an alert title must be 1-{MAX_ALERT_TITLE} characters")
        if not isinstance(text, str) or len(text) > MAX_ALERT_TEXT:
            raise ValueError(f"an alert text must be at most {MAX_ALERT_TEXT} characters")
        if level not in USER_ALERT_LEVELS:
            raise ValueError(f"an alert level must be one of {USER_ALERT_LEVELS}")
        if type(step) is not int or not -(2**62) < step < 2**62:
            raise ValueError("an alert step must be an integer")
        if not isinstance(at, (int, float)) or isinstance(at, bool) or not 0 <= at < 1e11:
            raise ValueError("an alert time must be unix seconds")
