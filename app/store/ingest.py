"""Exactly-once ingest of segments into DuckDB.

One segment is one transaction: check `(run_id, seq)` in `segments`, insert its rows, upsert
`latest` and `runs`, record `(run_id, seq)`, commit. The segment file is deleted only after the
commit, so a crash anywhere leaves either an un-ingested file (ingested on restart) or a recorded
segment whose file is skipped and removed: never a lost or duplicated row.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from trainlight.app.jsonsafe import jsonable
from trainlight.app.store.database import Store, utc_naive
from trainlight.collectors.schema import (
    NO_LAYER,
    RunHeader,
    check_segment_columns,
    read_header,
)


class SegmentError(ValueError):
    """A segment that cannot be ingested (corrupt, foreign or malformed); the message says why."""


@dataclass(frozen=True)
class Segment:
    header: RunHeader
    table: pa.Table


@dataclass(frozen=True)
class IngestResult:
    run_id: str
    seq: int
    rows: int
    duplicate: bool


def decode_segment(payload: bytes) -> Segment:
    """Parse and validate segment bytes; raises SegmentError with a message fit for a 4xx reply."""
    try:
        table = pq.read_table(io.BytesIO(payload))
    except (pa.ArrowException, OSError) as exc:
        raise SegmentError(f"not a readable Parquet file: {exc}") from exc
    try:
        header = read_header(table)
        check_segment_columns(table)
    except (ValueError, TypeError) as exc:
        raise SegmentError(str(exc)) from exc
    return Segment(header, table)


def ingest_segment(store: Store, segment: Segment) -> IngestResult:
    """Write one segment in one transaction, unless its (run_id, seq) was ingested before."""
    header = segment.header
    with store.write() as cur:
        seen = cur.execute(
            "SELECT n_rows FROM segments WHERE run_id = ? AND seq = ?", [header.run_id, header.seq]
        ).fetchone()
        if seen is not None:
            return IngestResult(header.run_id, header.seq, int(seen[0]), duplicate=True)
        cur.register("segment", segment.table)
        try:
            rows = _insert_rows(cur, header.run_id)
            _upsert_run(cur, header)
        finally:
            cur.unregister("segment")
        cur.execute(
            "INSERT INTO segments VALUES (?, ?, ?, ?)",
            [header.run_id, header.seq, rows, utc_naive()],
        )
    return IngestResult(header.run_id, header.seq, rows, duplicate=False)


def _insert_rows(cur: duckdb.DuckDBPyConnection, run_id: str) -> int:
    cur.execute(
        """INSERT INTO metrics
           SELECT ?, step, CAST(key AS VARCHAR), value, wall_time
           FROM segment WHERE "table" = 'metrics'""",
        [run_id],
    )
    cur.execute(
        """INSERT INTO layer_metrics
           SELECT ?, step, CAST(layer AS VARCHAR), CAST(key AS VARCHAR), value
           FROM segment WHERE "table" = 'layer_metrics'""",
        [run_id],
    )
    cur.execute(
        """INSERT INTO lca_frames
           SELECT ?, step, CAST(layer AS VARCHAR), n_rows, n_cols, "values"
           FROM segment WHERE "table" = 'lca_frames'""",
        [run_id],
    )
    # The newest value per series, so "last value of everything" never scans history.
    cur.execute(
        """INSERT INTO latest
           SELECT ?, CAST(key AS VARCHAR), coalesce(CAST(layer AS VARCHAR), ?),
                  max(step), arg_max(value, step)
           FROM segment WHERE "table" IN ('metrics', 'layer_metrics')
           GROUP BY ALL
           ON CONFLICT (run_id, key, layer) DO UPDATE
           SET step = excluded.step, value = excluded.value
           WHERE excluded.step >= latest.step""",
        [run_id, NO_LAYER],
    )
    row = cur.execute("SELECT count(*) FROM segment").fetchone()
    return int(row[0]) if row else 0


_UPSERT_RUN = """
INSERT INTO runs (run_id, project, name, "group", tags, config, status, started_at, updated_at,
                  host, pid, last_step, stop_requested, stop_reason, dropped_rows)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT max(step) FROM segment), false, ?, ?)
ON CONFLICT (run_id) DO UPDATE SET
    project = excluded.project, name = excluded.name, "group" = excluded."group",
    tags = excluded.tags, config = excluded.config, host = excluded.host, pid = excluded.pid,
    started_at = excluded.started_at,
    -- a late `running` segment never reopens an ended run; a later end state replaces an earlier
    -- one (a server-side `crashed` guess is corrected by the run's own final segment)
    status = CASE WHEN excluded.status = 'running' AND runs.status <> 'running'
                  THEN runs.status ELSE excluded.status END,
    updated_at = greatest(runs.updated_at, excluded.updated_at),
    last_step = greatest(runs.last_step, excluded.last_step),
    stop_reason = CASE WHEN excluded.stop_reason <> '' THEN excluded.stop_reason
                       ELSE runs.stop_reason END,
    dropped_rows = greatest(runs.dropped_rows, excluded.dropped_rows)
"""


def _upsert_run(cur: duckdb.DuckDBPyConnection, header: RunHeader) -> None:
    cur.execute(
        _UPSERT_RUN,
        [
            header.run_id,
            header.project,
            header.name,
            header.group,
            list(header.tags),
            json.dumps(jsonable(dict(header.config)), allow_nan=False, default=str),
            header.status,
            utc_naive(header.started_at),
            utc_naive(header.sent_at),
            header.host,
            header.pid,
            header.stop_reason,
            header.dropped_rows,
        ],
    )
