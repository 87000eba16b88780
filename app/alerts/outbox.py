"""Turning ingested state changes into `alerts` rows, one per destination, exactly once.

After each ingest pass (on the ingester's thread): for each destination, the `health` changes
with a `seq` above its mark that its filters take (states, signals, projects, groups, tags), the
runs that crashed or went stale (no update for `stale_after`) since it was configured and the
`mon.alert()` messages become
`pending` rows, and its mark moves on, in one transaction: the rows and the mark commit together,
so a crash between passes neither loses a change nor records one twice, and the primary key
(run, signal, state, step, destination) makes a repeat a no-op anyway. A destination configured
for the first time starts at the moment the server starts (`AlertOutbox` is made before the
first pass): history is not replayed to it. A pass that changed no verdict and crashed no run
costs one read, no write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import duckdb

from trainlight.app.alerts.destinations import USER_ALERT, Destination
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.read.queries import DEFAULT_STALE_AFTER

CRASHED, STALE = "crashed", "stale"
STATUS_SIGNAL = "status"  # an alert about the run's status, not a health signal
NO_STEP = -1  # a crashed run that never logged a step (keys cannot be NULL)


class AlertOutbox:
    def __init__(
        self,
        store: Store,
        destinations: Sequence[Destination],
        stale_after: timedelta = DEFAULT_STALE_AFTER,
    ) -> None:
        self.store, self.destinations = store, list(destinations)
        self.stale_after = stale_after
        # (top health seq, latest crash, top user alert seq, stale runs and their latest
        # update) the last record saw
        self._seen: tuple[Any, ...] | None = None
        if self.destinations:
            now = utc_naive()
            with store.write() as cur:
                for dest in self.destinations:
                    _mark(cur, dest.label, now)

    def record(self) -> int:
        """Record the alerts of every change ingested since the last call, and of the runs
        that went stale since; how many rows."""
        if not self.destinations:
            return 0
        now = utc_naive()
        cutoff = now - self.stale_after
        with self.store.read() as cur:
            row = cur.execute(
                """SELECT (SELECT coalesce(max(seq), 0) FROM health),
                          (SELECT max(updated_at) FROM runs WHERE status = ?),
                          (SELECT coalesce(max(seq), 0) FROM user_alerts),
                          (SELECT count(*) FROM runs WHERE status = 'running'
                                                     AND updated_at < ?),
                          (SELECT max(updated_at) FROM runs WHERE status = 'running'
                                                            AND updated_at < ?)""",
                [CRASHED, cutoff, cutoff],
            ).fetchone()
        seen = tuple(row) if row else (0, None, 0, 0, None)
        if seen == self._seen:
            return 0
        added = 0
        with self.store.write() as cur:
            for dest in self.destinations:
                seq, since, user_seq = _mark(cur, dest.label, now)
                added += _record_verdicts(cur, dest, seq, int(seen[0]), now)
                if dest.filters.crashes:
                    added += _record_crashes(cur, dest, since, now)
                if dest.filters.stale:
                    added += _record_stale(cur, dest, since, self.stale_after, now)
                added += _record_user_alerts(cur, dest, user_seq, int(seen[2]), now)
        self._seen = seen
        return added


def _mark(cur: duckdb.DuckDBPyConnection, label: str, now: datetime) -> tuple[int, datetime, int]:
    """(the last health seq turned into alerts for `label`, when it was first configured, the
    last user alert seq), set to the present the first time."""
    row = cur.execute(
        "SELECT health_seq, since, user_seq FROM alert_marks WHERE destination = ?", [label]
    ).fetchone()
    if row is not None:
        return int(row[0]), row[1], int(row[2])
    latest, user = cur.execute(
        """SELECT (SELECT coalesce(max(seq), 0) FROM health),
                  (SELECT coalesce(max(seq), 0) FROM user_alerts)"""
    ).fetchone() or (0, 0)
    cur.execute("INSERT INTO alert_marks VALUES (?, ?, ?, ?)", [label, int(latest), now, int(user)])
    return int(latest), now, int(user)


# A run matches a destination's filters (an empty list: any); `r` is the run's `runs` row.
_RUN_FILTERS = """
    AND (len(?::VARCHAR[]) = 0 OR list_contains(?::VARCHAR[], r.project))
    AND (len(?::VARCHAR[]) = 0 OR list_contains(?::VARCHAR[], r."group"))
    AND (len(?::VARCHAR[]) = 0 OR list_has_any(r.tags, ?::VARCHAR[]))"""


def _run_filters(dest: Destination) -> list[list[str]]:
    f = dest.filters
    return [list(f.projects)] * 2 + [list(f.groups)] * 2 + [list(f.tags)] * 2


def _record_verdicts(
    cur: duckdb.DuckDBPyConnection, dest: Destination, seq: int, top: int, now: datetime
) -> int:
    """The verdict changes to the destination's states (and of its signals and runs)."""
    if top <= seq:
        return 0
    signals = list(dest.filters.signals)
    added = cur.execute(
        f"""INSERT OR IGNORE INTO alerts
            SELECT h.run_id, h.signal, h.state, coalesce(h.step, ?), ?, h.reason, ?, 'pending',
                   0, NULL, ?, NULL
            FROM health h JOIN runs r USING (run_id)
            WHERE h.seq > ? AND h.seq <= ? AND list_contains(?::VARCHAR[], h.state)
            AND (len(?::VARCHAR[]) = 0 OR list_contains(?::VARCHAR[], h.signal)) {_RUN_FILTERS}
            RETURNING run_id""",
        [NO_STEP, dest.label, now, now, seq, top, list(dest.filters.states), signals, signals,
         *_run_filters(dest)],
    ).fetchall()  # fmt: skip
    cur.execute("UPDATE alert_marks SET health_seq = ? WHERE destination = ?", [top, dest.label])
    return len(added)


def _record_crashes(
    cur: duckdb.DuckDBPyConnection, dest: Destination, since: datetime, now: datetime
) -> int:
    added = cur.execute(
        f"""INSERT OR IGNORE INTO alerts
            SELECT r.run_id, ?, ?, coalesce(r.last_step, ?), ?, coalesce(r.stop_reason, ''), ?,
                   'pending', 0, NULL, ?, NULL
            FROM runs r WHERE r.status = ? AND r.updated_at >= ? {_RUN_FILTERS}
            RETURNING run_id""",
        [STATUS_SIGNAL, CRASHED, NO_STEP, dest.label, now, now, CRASHED, since,
         *_run_filters(dest)],
    ).fetchall()  # fmt: skip
    return len(added)


def _record_stale(
    cur: duckdb.DuckDBPyConnection,
    dest: Destination,
    since: datetime,
    stale_after: timedelta,
    now: datetime,
) -> int:
    """Running runs with no update for `stale_after` (a hung or killed process whose end the
    server could not see), once per (run, last step): a run that resumes and goes stale again
    at a later step is said again. Runs that went stale before the destination was configured
    are history."""
    added = cur.execute(
        f"""INSERT OR IGNORE INTO alerts
            SELECT r.run_id, ?, ?, coalesce(r.last_step, ?), ?,
                   'no update since ' || strftime(r.updated_at, '%Y-%m-%d %H:%M:%S') || ' UTC',
                   ?, 'pending', 0, NULL, ?, NULL
            FROM runs r WHERE r.status = 'running' AND r.updated_at < ?
            AND r.updated_at + ? >= ? {_RUN_FILTERS}
            RETURNING run_id""",
        [STATUS_SIGNAL, STALE, NO_STEP, dest.label, now, now, now - stale_after, stale_after,
         since, *_run_filters(dest)],
    ).fetchall()  # fmt: skip
    return len(added)


def _record_user_alerts(
    cur: duckdb.DuckDBPyConnection, dest: Destination, seq: int, top: int, now: datetime
) -> int:
    """`mon.alert()` messages: signal `alert:<title>`, state their level."""
    if top <= seq:
        return 0
    added: list[tuple[Any, ...]] = []
    if dest.filters.user_alerts:
        added = cur.execute(
            f"""INSERT OR IGNORE INTO alerts
                SELECT u.run_id, ? || u.title, u.level, coalesce(u.step, ?), ?, u.text, ?,
                       'pending', 0, NULL, ?, NULL
                FROM user_alerts u JOIN runs r USING (run_id)
                WHERE u.seq > ? AND u.seq <= ? {_RUN_FILTERS}
                RETURNING run_id""",
            [USER_ALERT, NO_STEP, dest.label, now, now, seq, top, *_run_filters(dest)],
        ).fetchall()
    cur.execute("UPDATE alert_marks SET user_seq = ? WHERE destination = ?", [top, dest.label])
    return len(added)
