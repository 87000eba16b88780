"""The load test's figures: ingest lag from the poller's snapshots, the store audit, the table.

Pure functions over what the load test recorded, plus one read-only DuckDB connection after the
server has stopped (DuckDB allows one process per database file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
from load_clients import Errors, Reload

if TYPE_CHECKING:
    from load_test import Load

KEYS_PER_STEP = 2  # load_worker.py logs `loss` and `step_copy`
GOAL_LAG_P95_S = 2.0
_PER_RUN = """
SELECT run_id, count(*), count(DISTINCT (step, key)), max(step),
       count(*) FILTER (WHERE NOT CASE key WHEN 'loss' THEN value = CAST(1 AS DOUBLE) / (step + 1)
                                       ELSE value = step END)
FROM metrics WHERE key IN ('loss', 'step_copy') GROUP BY run_id
"""


@dataclass(frozen=True)
class StoreCheck:
    runs_missing: int
    missing_rows: int
    duplicate_rows: int
    wrong_values: int
    segments: int
    ingest_span_s: float  # first to last segment ingested


@dataclass(frozen=True)
class Outcome:
    load: Load
    lags: list[float]
    reloads: list[Reload]
    errors: Errors
    collector_problems: dict[str, int]
    dropped_records: int
    outbox_leftovers: int  # segments still in outboxes when the collectors had exited
    inbox_left: int  # segments the server had not ingested when the drain stopped
    server_log: str
    store: StoreCheck
    drain_s: float
    slip_s: float
    close_s: float  # slowest worker's Monitor.close() of all its runs


def lag_samples(
    seen: Sequence[tuple[float, Mapping[str, int | None]]], results: Sequence[Mapping[str, Any]]
) -> list[float]:
    """Ingest lag of every (poll, run) pair while the run was not yet fully visible."""
    ticks = {rid: r["tick_times"] for r in results for rid in r["runs"]}
    lags: list[float] = []
    for at, last_steps in seen:
        for run_id, logged in ticks.items():
            if not logged or at < logged[0]:
                continue
            step = last_steps.get(run_id)
            if step is None:
                lags.append(at - logged[0])  # not visible yet: late since its first step
            elif step < len(logged) - 1:
                lags.append(at - logged[step])
    return lags


def check_store(db: Path, expected: Mapping[str, int]) -> StoreCheck:
    """Every logged row exactly once: compare the store with what the workers logged."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        found = {str(r[0]): r[1:] for r in con.execute(_PER_RUN).fetchall()}
        row = con.execute(
            "SELECT count(*), epoch(max(ingested_at) - min(ingested_at)) FROM segments"
        ).fetchone()
    finally:
        con.close()
    missing = duplicates = wrong = absent = 0
    for run_id, steps in expected.items():
        if run_id not in found:
            absent += 1
            missing += steps * KEYS_PER_STEP
            continue
        rows, distinct, _max_step, bad = found[run_id]
        missing += max(steps * KEYS_PER_STEP - distinct, 0)
        duplicates += rows - distinct
        wrong += bad
    segments, span = row if row else (0, 0.0)
    return StoreCheck(absent, missing, duplicates, wrong, int(segments), float(span or 0.0))


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _server_log(log: str) -> tuple[int, int, int]:
    """(ERROR/Traceback lines, connection-limit warnings, task-queue-depth warnings)."""
    lines = log.splitlines()
    return (
        sum(("ERROR" in line or "Traceback" in line) for line in lines),
        sum("reached the connection limit" in line for line in lines),
        sum("Task queue depth" in line for line in lines),
    )


def print_outcome(o: Outcome) -> bool:
    """Print the figures and goals; True when every goal is met."""
    ms = 1000.0
    grid = [r.grid_s for r in o.reloads]
    whole = [r.reload_s for r in o.reloads]
    server_errors, limit_warnings, queue_warnings = _server_log(o.server_log)
    problems = sum(o.collector_problems.values())
    errors = o.errors.total + problems + server_errors
    loss = o.store.missing_rows + o.store.runs_missing
    lag95 = _pct(o.lags, 95)
    expected_reloads = int(o.load.clients * o.load.duration)
    rate = o.store.segments / o.store.ingest_span_s if o.store.ingest_span_s else float("nan")
    rows: list[tuple[str, str, str]] = [
        (
            "ingest lag p50 / p95 / max s",
            f"{_pct(o.lags, 50):.2f} / {lag95:.2f} / {_pct(o.lags, 100):.2f}",
            f"p95 < {GOAL_LAG_P95_S}",
        ),
        ("  lag samples", f"{len(o.lags)}", ""),
        (
            "grid callback p50 / p95 / max ms",
            f"{_pct(grid, 50) * ms:.0f} / {_pct(grid, 95) * ms:.0f} / {_pct(grid, 100) * ms:.0f}",
            "",
        ),
        (
            "grid reload (5 requests) p50 / p95 ms",
            f"{_pct(whole, 50) * ms:.0f} / {_pct(whole, 95) * ms:.0f}",
            "",
        ),
        ("reloads done / scheduled", f"{len(o.reloads)} / {expected_reloads}", ""),
        ("rows per grid response (max)", f"{max((r.rows for r in o.reloads), default=0)}", ""),
        ("errors (clients + poller)", f"{o.errors.total} {o.errors.counts or ''}", "0"),
        ("collector problems", f"{problems} {o.collector_problems or ''}", "0"),
        ("server log ERROR lines", f"{server_errors}", "0"),
        (
            "waitress: connection limit hit / queue warnings",
            f"{limit_warnings} / {queue_warnings}",
            "",
        ),
        ("segments left in outboxes at exit", f"{o.outbox_leftovers} (delivered after)", "0"),
        ("rows missing from the store (runs absent)", f"{loss} ({o.store.runs_missing})", "0"),
        ("  of which still waiting in the inbox", f"{o.inbox_left} segments", ""),
        (
            "duplicate rows / wrong values",
            f"{o.store.duplicate_rows} / {o.store.wrong_values}",
            "0",
        ),
        ("records dropped by full buffers", f"{o.dropped_records}", "0"),
        ("segments ingested (mean /s over ingest span)", f"{o.store.segments} ({rate:.0f}/s)", ""),
        ("drain after the last tick s", f"{o.drain_s:.1f}", ""),
        ("Monitor.close() of a worker's runs, max s", f"{o.close_s:.1f}", ""),
        ("worker tick slip max s", f"{o.slip_s:.2f}", ""),
    ]
    print(f"\n{'measure':<48}{'value':<40}goal")
    for name, value, goal in rows:
        print(f"{name:<48}{value:<40}{goal}")
    for example in o.errors.examples:
        print(f"  e.g. {example}")
    ok = lag95 < GOAL_LAG_P95_S and errors == 0 and loss == 0 and o.store.duplicate_rows == 0
    print(f"verdict: {'PASS' if ok else 'FAIL'} (lag p95 < {GOAL_LAG_P95_S} s, 0 errors, 0 loss)")
    return ok
