"""The `alerts` rows as the API and the run page show them (destinations by label only)."""

from __future__ import annotations

from typing import Any

import duckdb

from trainlight.app.alerts.outbox import NO_STEP

MAX_ALERTS = 1000
COLUMNS = (
    "run_id", "signal", "state", "step", "destination", "reason", "created_at", "status",
    "attempts", "last_error", "sent_at",
)  # fmt: skip


def list_alerts(
    cur: duckdb.DuckDBPyConnection, run_id: str | None = None, limit: int = MAX_ALERTS
) -> list[dict[str, Any]]:
    """The newest alerts first, of one run or all."""
    where, params = ("WHERE run_id = ?", [run_id]) if run_id is not None else ("", [])
    rows = cur.execute(
        f"""SELECT {", ".join(COLUMNS)} FROM alerts {where}
            ORDER BY created_at DESC, run_id, signal, destination LIMIT ?""",
        [*params, min(max(limit, 1), MAX_ALERTS)],
    ).fetchall()
    found = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
    for alert in found:
        if alert["step"] == NO_STEP:
            alert["step"] = None
    return found
