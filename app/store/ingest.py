"""Exactly-once ingest of segments into DuckDB.

A batch of one run's segments is one transaction: drop the `(run_id, seq)` already recorded in
`segments`, insert the rest's rows, upsert `latest`, the grid's sparkline buckets and `runs`,
record their `(run_id, seq)`, commit. Segment files are deleted only after the commit, so a
crash anywhere leaves either un-ingested files (ingested on restart) or recorded segments whose
files are skipped and removed: never a lost or duplicated row. Batching matters: a transaction
has ~25 ms of fixed cost on this machine, which would cap 1k-row segments at ~30k rows/s if each
were its own transaction.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainlight.app.jsonsafe import jsonable
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.health import evaluate_segments
from trainlight.app.store.sparklines import update_sparkline
from trainlight.collectors.health.verdict import Transition
from trainlight.collectors.schema import (
    NO_LAYER,
    SEGMENT_TABLES,
    RunHeader,
    normalise_segment,
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
    seqs: tuple[int, ...]  # newly ingested
    rows: int  # newly ingested
    duplicates: int  # segments skipped because they were ingested before
    transitions: tuple[Transition, ...] = ()  # health state changes these segments caused
    prune_reason: str | None = None  # set when an auto-prune signal turned red


def decode_segment(payload: bytes) -> Segment:
    """Parse and validate segment bytes; raises SegmentError with a message fit for a 4xx reply."""
    try:
        table = pq.read_table(io.BytesIO(payload))
    except (pa.ArrowException, OSError) as exc:
        raise SegmentError(f"not a readable Parquet file: {exc}") from exc
    try:
        header = read_header(table)
        table = normalise_segment(table)
    except (ValueError, TypeError, pa.ArrowException) as exc:
        raise SegmentError(str(exc)) from exc
    return Segment(header, table)


def ingest_segments(store: Store, segments: Sequence[Segment]) -> IngestResult:
    """Write one run's segments (in seq order) in one transaction, skipping any seen before."""
    run_id = segments[0].header.run_id
    if any(seg.header.run_id != run_id for seg in segments):
        raise ValueError("a batch must hold segments of one run")
    with store.write() as cur:
        seen = {
            row[0]
            for row in cur.execute(
                "SELECT seq FROM segments WHERE run_id = ? AND seq IN (SELECT unnest(?))",
                [run_id, [seg.header.seq for seg in segments]],
            ).fetchall()
        }
        fresh = [seg for seg in segments if seg.header.seq not in seen]
        if not fresh:
            return IngestResult(run_id, (), 0, duplicates=len(segments))
        table = pa.concat_tables([seg.table.replace_schema_metadata(None) for seg in fresh])
        cur.register("segment", table)
        try:
            present = _tables_present(table)
            _insert_rows(cur, run_id, present)
            if "metrics" in present:
                update_sparkline(cur, run_id)
            _thin_frames(cur, run_id)
        finally:
            cur.unregister("segment")
        _upsert_run(cur, fresh[-1].header, _max_step(table))
        outcome = evaluate_segments(cur, run_id, fresh)
        cur.register("new_segments", _segments_rows(run_id, fresh))
        try:
            cur.execute("INSERT INTO segments SELECT * FROM new_segments")
        finally:
            cur.unregister("new_segments")
    seqs = tuple(seg.header.seq for seg in fresh)
    return IngestResult(
        run_id,
        seqs,
        table.num_rows,
        len(segments) - len(fresh),
        tuple(outcome.transitions),
        outcome.prune_reason,
    )


def _thin_frames(cur: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Apply the LCA frame-thinning contract (collectors/signals/lca_frames.py): a
    `lca/frame_stride` row (with `lca/every`) drops the stored frames off the new stride."""
    ((found,),) = cur.execute(
        "SELECT count(*) FROM segment WHERE key = 'lca/frame_stride'"
    ).fetchall()
    if not found:
        return  # the common case: no stride change, no scan of lca_frames
    cur.execute(
        """DELETE FROM lca_frames f USING (
               SELECT max(value) FILTER (WHERE key = 'lca/frame_stride') AS stride,
                      max(value) FILTER (WHERE key = 'lca/every') AS every
               FROM segment WHERE "table" = 'metrics'
                 AND key IN ('lca/frame_stride', 'lca/every')) t
           WHERE f.run_id = ? AND t.stride > 1 AND t.every >= 1
             AND (f.step // CAST(t.every AS BIGINT)) % CAST(t.stride AS BIGINT) <> 0""",
        [run_id],
    )


def _tables_present(table: pa.Table) -> set[str]:
    return {str(name) for name in pc.unique(table["table"]).to_pylist()}


def _max_step(table: pa.Table) -> int | None:
    value = pc.max(table["step"]).as_py() if table.num_rows else None
    return None if value is None else int(value)


def _segments_rows(run_id: str, segments: Sequence[Segment]) -> pa.Table:
    now = utc_naive()
    return pa.table(
        {
            "run_id": pa.array([run_id] * len(segments), pa.string()),
            "seq": pa.array([seg.header.seq for seg in segments], pa.int64()),
            "n_rows": pa.array([seg.table.num_rows for seg in segments], pa.int64()),
            "ingested_at": pa.array([now] * len(segments), pa.timestamp("us")),
        }
    )


_INSERTS = {
    "metrics": """INSERT INTO metrics
        SELECT ?, step, CAST(key AS VARCHAR), value, wall_time
        FROM segment WHERE "table" = 'metrics'""",
    "layer_metrics": """INSERT INTO layer_metrics
        SELECT ?, step, CAST(layer AS VARCHAR), CAST(key AS VARCHAR), value
        FROM segment WHERE "table" = 'layer_metrics'""",
    "lca_frames": """INSERT INTO lca_frames
        SELECT ?, step, CAST(layer AS VARCHAR), n_rows, n_cols, "values"
        FROM segment WHERE "table" = 'lca_frames'""",
}


def _insert_rows(cur: duckdb.DuckDBPyConnection, run_id: str, present: set[str]) -> None:
    for table in SEGMENT_TABLES:
        if table in present:
            cur.execute(_INSERTS[table], [run_id])
    if not present & {"metrics", "layer_metrics"}:
        return
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


_UPSERT_RUN = """
INSERT INTO runs (run_id, project, name, "group", tags, config, status, started_at, updated_at,
                  host, pid, last_step, stop_requested, stop_reason, dropped_rows,
                  pid_namespace)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false, ?, ?, ?)
ON CONFLICT (run_id) DO UPDATE SET
    project = excluded.project, name = excluded.name, "group" = excluded."group",
    tags = excluded.tags, config = excluded.config, host = excluded.host, pid = excluded.pid,
    pid_namespace = excluded.pid_namespace,
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


def _upsert_run(cur: duckdb.DuckDBPyConnection, header: RunHeader, last_step: int | None) -> None:
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
            last_step,
            header.stop_reason,
            header.dropped_rows,
            header.pid_namespace,
        ],
    )
