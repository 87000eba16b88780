"""`mon.alert()` messages from the segments' headers into `user_alerts`, in the ingest
transaction (so each is stored exactly once, with its segment)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from trainlight.app.store.database import utc_naive
from trainlight.app.store.ingest.batch_rows import RunBatch


def insert_user_alerts(cur: duckdb.DuckDBPyConnection, runs: Sequence[RunBatch]) -> None:
    rows = [
        (run.run_id, a["step"], a["level"], a["title"], a["text"], utc_naive(float(a["at"])))
        for run in runs
        for segment in run.segments
        for a in segment.header.alerts
    ]
    for row in rows:  # a handful per pass at most: mon.alert() is for rare events
        cur.execute(
            "INSERT INTO user_alerts VALUES (?, ?, ?, ?, ?, ?, nextval('user_alert_seq'))", row
        )
