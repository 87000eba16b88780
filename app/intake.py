"""`POST /api/v1/ingest` and `GET /api/v1/runs/<id>/control`: what the main server and its
receiver processes (app/receiver.py) both answer, with the same checks and the same replies.

An ingest is bounded (size, footer: store/ingest/segment_limits.py), written durably into the inbox
(one `write_atomically`, or a shared group commit: app/store/ingest/group_commit.py) and only then
acknowledged with 202 and the run's stop state; the ingester thread of the main process takes it
from there. While the inbox backlog is past its bound it is refused with 503 and `Retry-After`
(app/backlog.py). Where a server has receivers, the 202 also lists their ports, for collectors
that reached this server directly (see `advertised_receivers`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, request

from trainlight.app.backlog import BacklogGauge, busy_message
from trainlight.app.jsonsafe import jsonable
from trainlight.app.store.control import published_stop
from trainlight.app.store.ingest.segment_limits import LimitError, check_segment
from trainlight.collectors.schema import StoreLayout, is_valid_run_id, write_atomically

MAX_SEGMENT_BYTES = 64 * 1024 * 1024
# The largest request body read at all: one ingest segment plus room for a multipart envelope;
# waitress refuses anything larger before spooling it (app/connections.py).
MAX_REQUEST_BYTES = MAX_SEGMENT_BYTES + 1024
_SEQ = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() accepts "²"

# (stop requested, reason) of a run, or None when this server does not know the run.
StopLookup = Callable[[str], "tuple[bool, str] | None"]
SegmentWriter = Callable[[Path, bytes], None]


@dataclass(frozen=True)
class IntakeSettings:
    """How a server takes segments in: the same for the main process and its receivers."""

    write: SegmentWriter = write_atomically  # durable when it returns
    backlog: BacklogGauge | None = None
    receiver_ports: tuple[int, ...] = ()
    max_segment_bytes: int = MAX_SEGMENT_BYTES
    notify: Callable[[], None] | None = None  # after each durable write: wakes the ingester


DEFAULT_INTAKE = IntakeSettings()


@dataclass(frozen=True)
class Intake:
    layout: StoreLayout
    stop_state: StopLookup
    settings: IntakeSettings = DEFAULT_INTAKE


def json_response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(jsonable(payload), allow_nan=False, default=str)
    return Response(body, status=status, mimetype="application/json")


def error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def busy(retry_after_s: int) -> Response:
    response = error(503, busy_message(retry_after_s))
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def advertised_receivers(host_header: str, server_port: str, ports: tuple[int, ...]) -> list[int]:
    """The receiver ports to tell a collector about: only when its `Host` names the port this
    server listens on, i.e. it reached us directly. Through a proxy or a port mapping (another
    port, or none) the receivers' ports are not known to be reachable: tell nothing."""
    if not ports:
        return []
    try:
        parts = urlsplit(f"//{host_header}")
        port = parts.port or 80
    except ValueError:
        return []
    return list(ports) if str(port) == server_port else []


def add_intake_routes(api: Blueprint, intake: Intake) -> None:
    """Both routes on `api` (prefix /api/v1; access is checked in front of it: app/access.py)."""
    settings = intake.settings

    @api.post("/ingest")
    def ingest() -> Response:
        run_id = request.args.get("run_id", "")
        seq_text = request.args.get("seq", "")
        if not is_valid_run_id(run_id):
            return error(400, f"invalid or missing run_id {run_id[:100]!r}")
        if not _SEQ.fullmatch(seq_text):
            return error(400, f"seq must be a non-negative integer, got {seq_text[:40]!r}")
        limit = settings.max_segment_bytes
        too_large = error(413, f"segment larger than {limit} bytes")
        if request.content_length is not None and request.content_length > limit:
            return too_large
        wait = settings.backlog.retry_after() if settings.backlog is not None else None
        if wait is not None:  # usually refused before its body was read (app/connections.py)
            return busy(wait)
        payload = request.get_data(cache=False)
        if len(payload) > limit:
            return too_large
        try:  # the footer, the header and the key columns: no decode of the value lists
            header = check_segment(payload)
        except LimitError as exc:
            return error(422, f"malformed segment: {exc}")
        if (header.run_id, header.seq) != (run_id, int(seq_text)):
            return error(422, "run_id/seq in the URL do not match the segment's header")
        # Durable in the inbox before we acknowledge; the ingester thread takes it from there.
        intake.layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
        settings.write(intake.layout.segment_path(run_id, int(seq_text)), payload)
        if settings.notify is not None:
            settings.notify()
        answer: dict[str, Any] = {"run_id": run_id, "seq": int(seq_text), **stop_json(run_id)}
        ports = advertised_receivers(
            request.headers.get("Host", ""),
            str(request.environ.get("SERVER_PORT", "")),
            settings.receiver_ports,
        )
        if ports:
            answer["receivers"] = ports
        return json_response(answer, 202)

    @api.get("/runs/<run_id>/control")
    def control(run_id: str) -> Response:
        if not is_valid_run_id(run_id):
            return error(400, "invalid run id")
        state = intake.stop_state(run_id)
        if state is None:
            return error(404, f"no run {run_id!r} in this store (yet)")
        return json_response({"run_id": run_id, "stop": state[0], "reason": state[1]})

    def stop_json(run_id: str) -> dict[str, Any]:
        # From the control file, not the database: a stat per acknowledgement, where a query
        # per request cost the main process a fifth of its time under 200 runs.
        stop_requested, reason = published_stop(intake.layout, run_id)
        return {"stop": stop_requested, "reason": reason}
