"""The rows of one ingest batch, written with one statement per table for all its runs.

Ingest registers the batch (every fresh segment of every run, concatenated, plus `run_id` and
`ord`, the row's position in the batch) as the DuckDB view `batch`; the statements here turn it
into `metrics`, `layer_metrics`, `lca_frames`, `latest`, `lca_layers` and `runs` rows whatever
the number of runs in it, so a pass of 200 runs costs what a pass of one did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainlight.app.jsonsafe import jsonable
from trainlight.app.store.database import utc_naive
from trainlight.app.store.ingest.registered import registered
from trainlight.app.store.ingest.segment import Segment
from trainlight.collectors.schema import NO_LAYER, SEGMENT_TABLES, RunHeader

# Below this mean rows per chunk, the batch is copied into one chunk before DuckDB scans it.
SMALL_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class RunBatch:
    """One run's fresh segments of a batch, in the order ingest takes them (seq order)."""

    run_id: str
    segments: tuple[Segment, ...]


def group_by_run(segments: Iterable[Segment]) -> list[RunBatch]:
    """Segments grouped by run (runs in order of first appearance, segments in given order)."""
    runs: dict[str, list[Segment]] = {}
    for seg in segments:
        runs.setdefault(seg.header.run_id, []).append(seg)
    return [RunBatch(run_id, tuple(segs)) for run_id, segs in runs.items()]


def batch_table(runs: Sequence[RunBatch]) -> pa.Table:
    """Every segment's rows, run after run, with `run_id` and `ord` (position in the batch)."""
    tables = [seg.table.replace_schema_metadata(None) for run in runs for seg in run.segments]
    table = pa.concat_tables(tables)
    if table.num_rows < SMALL_CHUNK_ROWS * table["step"].num_chunks:
        # DuckDB's Arrow scan pays per chunk: 1,000 chunks of 20 rows took ~10x longer per
        # statement than the same rows in one chunk, which costs ~10 ms to build.
        table = table.combine_chunks()
    lengths = [sum(seg.table.num_rows for seg in run.segments) for run in runs]
    indices = np.repeat(np.arange(len(runs), dtype=np.int32), lengths)
    run_ids = pa.DictionaryArray.from_arrays(
        pa.array(indices), pa.array([run.run_id for run in runs], pa.string())
    )
    table = table.append_column("run_id", run_ids)
    return table.append_column("ord", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def column_values(table: pa.Table, column: str) -> set[str]:
    """The distinct values of a dictionary column (read from its dictionaries: no row scan; a
    dictionary may hold an unused value, which only costs a statement that finds no rows)."""
    values: set[str] = set()
    for chunk in table[column].chunks:
        if pa.types.is_dictionary(chunk.type):
            values.update(str(v) for v in chunk.dictionary.to_pylist() if v is not None)
        else:
            values.update(str(v) for v in pc.unique(chunk).to_pylist() if v is not None)
    return values


_INSERTS = {
    "metrics": """INSERT INTO metrics
        SELECT CAST(run_id AS VARCHAR), step, CAST(key AS VARCHAR), value, wall_time
        FROM batch WHERE "table" = 'metrics'""",
    "layer_metrics": """INSERT INTO layer_metrics
        SELECT CAST(run_id AS VARCHAR), step, CAST(layer AS VARCHAR), CAST(key AS VARCHAR), value
        FROM batch WHERE "table" = 'layer_metrics'""",
    "lca_frames": """INSERT INTO lca_frames
        SELECT CAST(run_id AS VARCHAR), step, CAST(layer AS VARCHAR), n_rows, n_cols, "values"
        FROM batch WHERE "table" = 'lca_frames'""",
    "arrays": """INSERT INTO arrays
        SELECT CAST(run_id AS VARCHAR), step, CAST(key AS VARCHAR), CAST(layer AS VARCHAR),
               n_rows, n_cols, "values"
        FROM batch WHERE "table" = 'arrays'""",
}

# The newest value per series, so "last value of everything" never scans history.
_LATEST = """
INSERT INTO latest
SELECT CAST(run_id AS VARCHAR), CAST(key AS VARCHAR), coalesce(CAST(layer AS VARCHAR), ?),
       max(step), arg_max(value, step)
FROM batch WHERE "table" IN ('metrics', 'layer_metrics')
GROUP BY ALL
ON CONFLICT (run_id, key, layer) DO UPDATE
SET step = excluded.step, value = excluded.value
WHERE excluded.step >= latest.step
"""


def insert_rows(cur: duckdb.DuckDBPyConnection, table: pa.Table) -> set[str]:
    """Insert the batch's rows into their tables and upsert `latest`; the tables present."""
    present = column_values(table, "table") & set(SEGMENT_TABLES)
    for name in SEGMENT_TABLES:
        if name in present:
            cur.execute(_INSERTS[name])
    if present & {"metrics", "layer_metrics"}:
        cur.execute(_LATEST, [NO_LAYER])
    return present


def thin_frames(cur: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Apply the LCA frame-thinning contract (collectors/signals/lca_frames.py): a run's
    `lca/frame_stride` row (with `lca/every`) drops its stored frames off the new stride."""
    if "lca/frame_stride" not in column_values(table, "key"):
        return  # the common case: no stride change, no scan of lca_frames
    cur.execute(
        """DELETE FROM lca_frames f USING (
               SELECT CAST(run_id AS VARCHAR) AS run_id,
                      max(value) FILTER (WHERE key = 'lca/frame_stride') AS stride,
                      max(value) FILTER (WHERE key = 'lca/every') AS every
               FROM batch WHERE "table" = 'metrics'
                 AND key IN ('lca/frame_stride', 'lca/every')
               GROUP BY 1) t
           WHERE f.run_id = t.run_id AND t.stride > 1 AND t.every >= 1
             AND (f.step // CAST(t.every AS BIGINT)) % CAST(t.stride AS BIGINT) <> 0"""
    )


def record_lca_layers(cur: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Give each run's layers with LCA their position in model order (first appearance), so the
    grid's layer lights read `lca_layers` joined with `latest` instead of scanning history."""
    if "lca" not in column_values(table, "key"):
        return
    cur.execute(
        """INSERT INTO lca_layers
           SELECT n.run_id, n.layer,
                  coalesce(t.top, -1) + row_number() OVER (PARTITION BY n.run_id ORDER BY n.first)
           FROM (SELECT CAST(run_id AS VARCHAR) AS run_id,
                        coalesce(CAST(layer AS VARCHAR), ?) AS layer, min(ord) AS first
                 FROM batch WHERE "table" = 'layer_metrics' AND key = 'lca'
                 GROUP BY ALL) n
           LEFT JOIN (SELECT run_id, max(ord) AS top FROM lca_layers GROUP BY run_id) t
                  USING (run_id)
           ON CONFLICT DO NOTHING""",
        [NO_LAYER],
    )


_UPSERT_RUNS = """
INSERT INTO runs (run_id, project, name, "group", tags, config, status, started_at, updated_at,
                  host, pid, last_step, stop_requested, stop_reason, dropped_rows,
                  pid_namespace, planned_steps)
SELECT h.run_id, h.project, h.name, h."group", h.tags, CAST(h.config AS JSON), h.status,
       h.started_at, h.updated_at, h.host, h.pid, s.last_step, false, h.stop_reason,
       h.dropped_rows, h.pid_namespace, h.planned_steps
FROM batch_runs h
LEFT JOIN (SELECT CAST(run_id AS VARCHAR) AS run_id, max(step) AS last_step
           FROM batch GROUP BY 1) s USING (run_id)
ON CONFLICT (run_id) DO UPDATE SET
    project = excluded.project, name = excluded.name, "group" = excluded."group",
    tags = excluded.tags, config = excluded.config, host = excluded.host, pid = excluded.pid,
    pid_namespace = excluded.pid_namespace, planned_steps = excluded.planned_steps,
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


def upsert_runs(cur: duckdb.DuckDBPyConnection, runs: Sequence[RunBatch]) -> None:
    """Upsert every run of the batch from its last segment's header (one row per run)."""
    headers = [run.segments[-1].header for run in runs]
    table = pa.table(
        {
            "run_id": pa.array([h.run_id for h in headers], pa.string()),
            "project": pa.array([h.project for h in headers], pa.string()),
            "name": pa.array([h.name for h in headers], pa.string()),
            "group": pa.array([h.group for h in headers], pa.string()),
            "tags": pa.array([list(h.tags) for h in headers], pa.list_(pa.string())),
            "config": pa.array([_config_json(h.config) for h in headers], pa.string()),
            "status": pa.array([h.status for h in headers], pa.string()),
            "started_at": _timestamps(h.started_at for h in headers),
            # The trainer's clock is not trusted beyond now: a `sent_at` in the future would
            # keep the run "running" (fresh) until then, as `greatest()` keeps the latest.
            "updated_at": _timestamps(h.sent_at for h in headers),
            "host": pa.array([h.host for h in headers], pa.string()),
            "pid": pa.array([h.pid for h in headers], pa.int32()),
            "stop_reason": pa.array([h.stop_reason for h in headers], pa.string()),
            "dropped_rows": pa.array([h.dropped_rows for h in headers], pa.int64()),
            "pid_namespace": pa.array([h.pid_namespace for h in headers], pa.string()),
            "planned_steps": pa.array([_planned(h) for h in headers], pa.int64()),
        }
    )
    with registered(cur, "batch_runs", table):
        cur.execute(_UPSERT_RUNS)


def _planned(header: RunHeader) -> int | None:
    """The declared length, where it fits a BIGINT (a config key may hold any integer)."""
    planned = header.planned_steps()
    return planned if planned is not None and planned < 2**53 else None


def _config_json(config: Mapping[str, Any]) -> str:
    return json.dumps(jsonable(dict(config)), allow_nan=False, default=str)


def _timestamps(seconds: Iterable[float | None]) -> pa.Array:
    """Trainer clock readings as timestamps, clamped to [epoch, server's now] (None: now)."""
    now = time.time()
    clamped = [now if s is None else min(max(s, 0.0), now) for s in seconds]
    return pa.array([utc_naive(s) for s in clamped], pa.timestamp("us"))
