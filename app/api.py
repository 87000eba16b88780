"""The HTTP API under `/api/v1`: ingest for remote collectors, runs for scripts, stop for humans.

Routes are thin: they parse and check input, call the store functions the dashboard also uses, and
answer JSON (non-finite numbers as "NaN"/"Infinity" strings). Every malformed request gets a 4xx
whose message names the problem; nothing a client sends becomes part of a path or a SQL string.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, request

from trainlight.app.jsonsafe import jsonable
from trainlight.app.store.control import request_stop
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.quarantine import rejected_summary
from trainlight.app.store.queries import RunDetail, RunSummary, get_run, list_runs, stop_state
from trainlight.app.store.segment_limits import LimitError, check_segment
from trainlight.collectors.health.registry import signal_names
from trainlight.collectors.health.verdict import GREY
from trainlight.collectors.schema import is_valid_run_id, write_atomically

MAX_SEGMENT_BYTES = 64 * 1024 * 1024
_SEQ = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() accepts "²"


def json_response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(jsonable(payload), allow_nan=False, default=str)
    return Response(body, status=status, mimetype="application/json")


def error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def summary_json(run: RunSummary) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "name": run.name,
        "project": run.project,
        "group": run.group,
        "tags": list(run.tags),
        "status": run.status,
        "last_step": run.last_step,
        "started_at": run.started_at,
        "updated_at": run.updated_at,
        "stop_requested": run.stop_requested,
        "stop_reason": run.stop_reason,
        "dropped_rows": run.dropped_rows,
        "health": {**dict.fromkeys(signal_names(), GREY), **run.health},
        "last_values": dict(run.last_values),
    }


def detail_json(detail: RunDetail) -> dict[str, Any]:
    return {
        **summary_json(detail.summary),
        "config": detail.config,
        "host": detail.host,
        "pid": detail.pid,
    }


def create_api(
    store: Store,
    stale_after: timedelta,
    max_segment_bytes: int = MAX_SEGMENT_BYTES,
) -> Blueprint:
    """The API blueprint bound to one store (access is checked in front of it: app/access.py)."""
    api = Blueprint("trainlight_api", __name__, url_prefix="/api/v1")

    @api.post("/ingest")
    def ingest() -> Response:
        run_id = request.args.get("run_id", "")
        seq_text = request.args.get("seq", "")
        if not is_valid_run_id(run_id):
            return error(400, f"invalid or missing run_id {run_id[:100]!r}")
        if not _SEQ.fullmatch(seq_text):
            return error(400, f"seq must be a non-negative integer, got {seq_text[:40]!r}")
        too_large = error(413, f"segment larger than {max_segment_bytes} bytes")
        if request.content_length is not None and request.content_length > max_segment_bytes:
            return too_large
        payload = request.get_data(cache=False)
        if len(payload) > max_segment_bytes:
            return too_large
        try:  # the footer, the header and the key columns: no decode of the value lists
            header = check_segment(payload)
        except LimitError as exc:
            return error(422, f"malformed segment: {exc}")
        if (header.run_id, header.seq) != (run_id, int(seq_text)):
            return error(422, "run_id/seq in the URL do not match the segment's header")
        # Durable in the inbox before we acknowledge; the ingester thread takes it from there.
        directory = store.layout.run_inbox(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(store.layout.segment_path(run_id, int(seq_text)), payload)
        return json_response({"run_id": run_id, "seq": int(seq_text), **_control(run_id)}, 202)

    @api.get("/health")
    def health() -> Response:
        """Ingest health: entries the ingester quarantined (count, newest reasons)."""
        rejected = rejected_summary(store.layout)
        latest = [{"entry": name, "reason": reason} for name, reason in rejected.latest]
        return json_response({"rejected_segments": rejected.count, "latest_rejections": latest})

    @api.get("/runs")
    def runs() -> Response:
        with store.read() as cur:
            found = list_runs(cur, utc_naive(), stale_after)
        return json_response({"runs": [summary_json(r) for r in found]})

    @api.get("/runs/<run_id>")
    def run(run_id: str) -> Response:
        if not is_valid_run_id(run_id):
            return error(400, "invalid run id")
        with store.read() as cur:
            detail = get_run(cur, run_id, utc_naive(), stale_after)
        if detail is None:
            return error(404, f"no run {run_id!r} in this store")
        return json_response(detail_json(detail))

    @api.post("/runs/<run_id>/stop")
    def stop(run_id: str) -> Response:
        if not is_valid_run_id(run_id):
            return error(400, "invalid run id")
        body = request.get_json(silent=True)
        reason = body.get("reason") if isinstance(body, dict) else None
        if reason is not None and not isinstance(reason, str):
            return error(400, "reason must be a string")
        if not request_stop(store, run_id, (reason or "stop requested through the API")[:500]):
            return error(404, f"no run {run_id!r} in this store")
        return json_response({"run_id": run_id, **_control(run_id)})

    @api.get("/runs/<run_id>/control")
    def control(run_id: str) -> Response:
        if not is_valid_run_id(run_id):
            return error(400, "invalid run id")
        with store.read() as cur:
            state = stop_state(cur, run_id)
        if state is None:
            return error(404, f"no run {run_id!r} in this store (yet)")
        return json_response({"run_id": run_id, "stop": state[0], "reason": state[1]})

    def _control(run_id: str) -> dict[str, Any]:
        with store.read() as cur:
            state = stop_state(cur, run_id)
        stop_requested, reason = state or (False, "")
        return {"stop": stop_requested, "reason": reason}

    return api
