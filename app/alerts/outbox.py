"""Turning ingested state changes into `alerts` rows, one per destination, exactly once.

After each ingest pass (on the ingester's thread), one transaction per pass: for each
destination, the red `health` changes with a `seq` above its mark and the runs that crashed
since it was configured become `pending` rows, and its mark moves on. The rows and the mark
commit together, so a crash between passes neither loses a change nor records one twice, and
the primary key (run, signal, state, step, destination) makes a repeat a no-op anyway. A
destination configured for the first time starts at the present: history is not replayed to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb

from trainlight.app.alerts.destinations import Destination
from trainlight.app.store.database import Store, utc_naive
from trainlight.collectors.health.verdict import RED

CRASHED = "crashed"
STATUS_SIGNAL = "status"  # an alert about the run's status, not a health signal
NO_STEP = -1  # a crashed run that never logged a step (keys cannot be NULL)


def record_alerts(store: Store, destinations: Sequence[Destination]) -> int:
    """Record the alerts of every change ingested since the last call; how many rows."""
    if not destinations:
        return 0
    now = utc_naive()
    added = 0
    with store.write() as cur:
        for dest in destinations:
            seq, since = _mark(cur, dest.label, now)
            added += _record_reds(cur, dest.label, seq, now)
            added += _record_crashes(cur, dest.label, since, now)
    return added


def _mark(cur: duckdb.DuckDBPyConnection, label: str, now: datetime) -> tuple[int, datetime]:
    """(the last health seq turned into alerts for `label`, when it was first configured),
    set to the present the first time."""
    row = cur.execute(
        "SELECT health_seq, since FROM alert_marks WHERE destination = ?", [label]
    ).fetchone()
    if row is not None:
        return int(row[0]), row[1]
    (latest,) = cur.execute("SELECT coalesce(max(seq), 0) FROM health").fetchone() or (0,)
    cur.execute("INSERT INTO alert_marks VALUES (?, ?, ?)", [label, int(latest), now])
    return int(latest), now


def _record_reds(cur: duckdb.DuckDBPyConnection, label: str, seq: int, now: datetime) -> int:
    (top,) = cur.execute("SELECT coalesce(max(seq), 0) FROM health").fetchone() or (0,)
    if int(top) <= seq:
        return 0
    before = _count(cur, label)
    cur.execute(
        """INSERT OR IGNORE INTO alerts
           SELECT run_id, signal, state, coalesce(step, ?), ?, reason, ?, 'pending', 0, NULL,
                  ?, NULL
           FROM health WHERE seq > ? AND seq <= ? AND state = ?
           ORDER BY seq""",
        [NO_STEP, label, now, now, seq, int(top), RED],
    )
    cur.execute("UPDATE alert_marks SET health_seq = ? WHERE destination = ?", [int(top), label])
    return _count(cur, label) - before


def _record_crashes(
    cur: duckdb.DuckDBPyConnection, label: str, since: datetime, now: datetime
) -> int:
    before = _count(cur, label)
    cur.execute(
        """INSERT OR IGNORE INTO alerts
           SELECT run_id, ?, ?, coalesce(last_step, ?), ?, coalesce(stop_reason, ''), ?,
                  'pending', 0, NULL, ?, NULL
           FROM runs WHERE status = ? AND updated_at >= ?""",
        [STATUS_SIGNAL, CRASHED, NO_STEP, label, now, now, CRASHED, since],
    )
    return _count(cur, label) - before


def _count(cur: duckdb.DuckDBPyConnection, label: str) -> int:
    (n,) = cur.execute("SELECT count(*) FROM alerts WHERE destination = ?", [label]).fetchone() or (
        0,
    )
    return int(n)
