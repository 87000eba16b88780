"""The HTTP API under `/api/v1`: ingest for remote collectors, runs for scripts, stop for humans.

Ingest and the stop state (`/runs/<id>/control`) are app/intake.py's, shared with the receivers.

Routes are thin: they parse and check input, call the store functions the dashboard also uses, and
answer JSON (non-finite numbers as "NaN"/"Infinity" strings). Every malformed request gets a 4xx
whose message names the problem; nothing a client sends becomes part of a path or a SQL string.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, request

from trainlight.app.intake import (
    DEFAULT_INTAKE,
    Intake,
    IntakeSettings,
    add_intake_routes,
    error,
    json_response,
)
from trainlight.app.store.control import request_stop
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.ingest.quarantine import rejected_summary
from trainlight.app.store.read.alerts import MAX_ALERTS, list_alerts
from trainlight.app.store.read.queries import RunDetail, RunSummary, get_run, list_runs, stop_state
from trainlight.collectors.health.registry import signal_names
from trainlight.collectors.health.verdict import GREY
from trainlight.collectors.schema import is_valid_run_id


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
    intake: IntakeSettings = DEFAULT_INTAKE,
) -> Blueprint:
    """The API blueprint bound to one store (access is checked in front of it: app/access.py)."""
    api = Blueprint("trainlight_api", __name__, url_prefix="/api/v1")

    def run_stop_state(run_id: str) -> tuple[bool, str] | None:
        with store.read() as cur:
            return stop_state(cur, run_id)

    add_intake_routes(api, Intake(store.layout, run_stop_state, intake))

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

    @api.get("/alerts")
    def alerts() -> Response:
        """The alerts recorded (newest first), with their delivery status; `?run_id=` one
        run's, `?limit=` at most that many (1000)."""
        run_id = request.args.get("run_id")
        if run_id is not None and not is_valid_run_id(run_id):
            return error(400, "invalid run id")
        limit_text = request.args.get("limit", str(MAX_ALERTS))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_ALERTS:
            return error(400, f"limit must be an integer from 1 to {MAX_ALERTS}")
        with store.read() as cur:
            found = list_alerts(cur, run_id, int(limit_text))
        return json_response({"alerts": found})

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
        stop_requested, stop_reason = run_stop_state(run_id) or (False, "")
        return json_response({"run_id": run_id, "stop": stop_requested, "reason": stop_reason})

    return api
