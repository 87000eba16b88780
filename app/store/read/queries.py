"""Read-side queries: what the grid, the API and `trainlight runs` show.

One function per question, each taking a cursor and returning frozen dataclasses, so the HTTP API,
the Dash pages and the terminal table all show the same data computed the same way. `stale` is
derived here, never stored: a `running` run whose last heartbeat is older than `stale_after`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb

from trainlight.collectors.health.ks import QUANTILE_KEYS
from trainlight.collectors.schema import NO_LAYER, STALE

DEFAULT_STALE_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    name: str
    project: str
    group: str
    tags: tuple[str, ...]
    status: str  # running | finished | crashed | stopped | stale
    last_step: int | None
    started_at: datetime | None
    updated_at: datetime | None
    stop_requested: bool
    stop_reason: str
    dropped_rows: int
    health: Mapping[str, str] = field(default_factory=dict)  # signal -> state
    last_values: Mapping[str, float] = field(default_factory=dict)  # run-level scalar -> value


@dataclass(frozen=True)
class RunDetail:
    summary: RunSummary
    config: Mapping[str, Any]
    host: str
    pid: int | None


_RUN_COLUMNS = """r.run_id, r.name, r.project, r."group", r.tags, r.status, r.last_step,
    r.started_at, r.updated_at, r.stop_requested, r.stop_reason, r.dropped_rows"""


def display_status(
    status: str,
    updated_at: datetime | None,
    now: datetime,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> str:
    if status == "running" and (updated_at is None or now - updated_at > stale_after):
        return STALE
    return status


def list_runs(
    cur: duckdb.DuckDBPyConnection,
    now: datetime,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    run_ids: Sequence[str] | None = None,
) -> list[RunSummary]:
    """Every run (or the given ones), most recently updated first."""
    where, params = (
        ("WHERE r.run_id IN (SELECT unnest(?))", [list(run_ids)]) if run_ids else ("", [])
    )
    rows = cur.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs r {where} ORDER BY r.updated_at DESC, r.run_id", params
    ).fetchall()
    health = _current_health(cur, run_ids)
    values = _last_values(cur, run_ids)
    return [_summary(row, now, stale_after, health, values) for row in rows]


def get_run(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    now: datetime,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> RunDetail | None:
    runs = list_runs(cur, now, stale_after, run_ids=[run_id])
    if not runs:
        return None
    row = cur.execute("SELECT config, host, pid FROM runs WHERE run_id = ?", [run_id]).fetchone()
    assert row is not None
    config = json.loads(row[0]) if row[0] else {}
    return RunDetail(summary=runs[0], config=config, host=row[1] or "", pid=row[2])


def stop_state(cur: duckdb.DuckDBPyConnection, run_id: str) -> tuple[bool, str] | None:
    """(stop requested, reason) for a run, or None if the store does not know it (yet)."""
    row = cur.execute(
        "SELECT stop_requested, stop_reason FROM runs WHERE run_id = ?", [run_id]
    ).fetchone()
    if row is None:
        return None
    return bool(row[0]), row[1] or ""


def _current_health(
    cur: duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None
) -> dict[str, dict[str, str]]:
    where, params = ("WHERE run_id IN (SELECT unnest(?))", [list(run_ids)]) if run_ids else ("", [])
    rows = cur.execute(
        f"""SELECT run_id, signal, arg_max(state, seq) FROM health {where}
            GROUP BY run_id, signal""",
        params,
    ).fetchall()
    return _by_run(rows)


def _last_values(
    cur: duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None
) -> dict[str, dict[str, float]]:
    # Quantile keys hold a whole distribution per step: no single "last value" to show.
    where = "AND run_id IN (SELECT unnest(?))" if run_ids else ""
    params: list[Any] = [NO_LAYER, list(QUANTILE_KEYS)] + ([list(run_ids)] if run_ids else [])
    rows = cur.execute(
        f"""SELECT run_id, key, value FROM latest
            WHERE layer = ? AND NOT list_contains(?, key) {where} ORDER BY run_id, key""",
        params,
    ).fetchall()
    return _by_run(rows)


def _by_run(rows: list[tuple[Any, ...]]) -> dict[str, dict[str, Any]]:
    """(run_id, name, value) rows as {run_id: {name: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for run_id, name, value in rows:
        out.setdefault(run_id, {})[name] = value
    return out


def _summary(
    row: tuple[Any, ...],
    now: datetime,
    stale_after: timedelta,
    health: Mapping[str, Mapping[str, str]],
    values: Mapping[str, Mapping[str, float]],
) -> RunSummary:
    (
        run_id,
        name,
        project,
        group,
        tags,
        status,
        last_step,
        started_at,
        updated_at,
        stop_requested,
        stop_reason,
        dropped_rows,
    ) = row
    return RunSummary(
        run_id=run_id,
        name=name or run_id,
        project=project or "",
        group=group or "",
        tags=tuple(tags or ()),
        status=display_status(status, updated_at, now, stale_after),
        last_step=last_step,
        started_at=started_at,
        updated_at=updated_at,
        stop_requested=bool(stop_requested),
        stop_reason=stop_reason or "",
        dropped_rows=int(dropped_rows or 0),
        health=dict(health.get(run_id, {})),
        last_values=dict(values.get(run_id, {})),
    )
