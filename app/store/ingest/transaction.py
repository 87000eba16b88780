"""Exactly-once ingest of segments into DuckDB, many runs per transaction.

One ingest pass writes every pending segment of every run (up to a row cap) in ONE transaction:
record the batch's `(run_id, seq)` in `segments` (those recorded before are dropped right there),
insert the rest's rows, upsert `latest`, the grid's sparkline buckets, the LCA layer order and
`runs`, advance each run's health rules segment by segment in sequence order, commit. Segment
files are deleted only after the commit, so a crash anywhere leaves either un-ingested files
(ingested on restart) or recorded segments whose files are skipped and removed: never a lost or
duplicated row.

Why one transaction for all runs, with set-based SQL per table over the whole batch: on this
machine a statement costs ~1-10 ms and a commit ~10 ms whatever its size, so a transaction per
run with ~15 statements capped ingest at ~10 small segments/s, while 200 HTTP runs flushing once a
second send 200/s. Now a pass costs a fixed ~15 statements plus the rows, and only the health
rules loop over runs, in Python (app/store/ingest/health.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.ingest.batch_rows import (
    RunBatch,
    batch_table,
    group_by_run,
    insert_rows,
    record_lca_layers,
    thin_frames,
    upsert_runs,
)
from trainlight.app.store.ingest.health import HealthOutcome, LiveHealth, evaluate_runs
from trainlight.app.store.ingest.registered import registered
from trainlight.app.store.ingest.segment import Segment
from trainlight.app.store.ingest.segment_limits import (
    check_footer,
    check_row_count,
    check_rows,
    header_bytes,
    open_segment,
    parse_header,
)
from trainlight.app.store.ingest.sparklines import update_sparklines
from trainlight.app.store.ingest.user_alerts import insert_user_alerts
from trainlight.collectors.health.verdict import Transition
from trainlight.collectors.schema import SEGMENT_SCHEMA, check_segment_schema, normalise_segment
from trainlight.collectors.wire import LOSS

__all__ = [
    "IngestResult",
    "Segment",
    "SegmentError",
    "decode_segment",
    "ingest_batch",
    "ingest_segments",
]


_COLUMNS = SEGMENT_SCHEMA.names


class SegmentError(ValueError):
    """A segment that cannot be ingested (corrupt, foreign or malformed); the message says why."""


@dataclass(frozen=True)
class IngestResult:
    """What one run's segments of a batch did."""

    run_id: str
    seqs: tuple[int, ...]  # newly ingested
    rows: int  # newly ingested
    duplicates: int  # segments skipped because they were ingested before
    transitions: tuple[Transition, ...] = ()  # health state changes these segments caused
    prune_reason: str | None = None  # set when an auto-prune signal turned red


def decode_segment(payload: bytes) -> Segment:
    """Parse and validate segment bytes; raises SegmentError with a message fit for a 4xx reply.

    The caps of `segment_limits` are checked from the footer before anything is decompressed,
    and the header before it is parsed, so a bomb that reached the inbox is refused here too."""
    try:
        # ParquetFile (no dataset layer) and no thread pool: a small file reads in about half
        # of read_table's time, and ingest decodes up to hundreds of small files per pass.
        parquet = open_segment(payload)
        check_footer(parquet.metadata)
        schema = parquet.schema_arrow  # built from the footer on each access: once
        header = parse_header(header_bytes(schema))
        check_segment_schema(schema)  # extra columns are never decoded
        table = parquet.read(columns=_COLUMNS, use_threads=False)
        check_row_count(table, parquet.metadata.num_rows)
        table = normalise_segment(table.replace_schema_metadata(schema.metadata))
        check_rows(table)
    except (pa.ArrowException, OSError) as exc:
        raise SegmentError(f"not a readable Parquet file: {exc}") from exc
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise SegmentError(str(exc)) from exc
    return Segment(header, table)


def ingest_segments(store: Store, segments: Sequence[Segment]) -> IngestResult:
    """Write one run's segments (in seq order) in one transaction, skipping any seen before."""
    run_id = segments[0].header.run_id
    if any(seg.header.run_id != run_id for seg in segments):
        raise ValueError("a batch must hold segments of one run")
    (result,) = ingest_batch(store, segments)
    return result


def ingest_batch(
    store: Store, segments: Sequence[Segment], live: LiveHealth | None = None
) -> tuple[IngestResult, ...]:
    """Write the segments of any number of runs in one transaction, skipping any seen before.

    Each run's segments are taken in the order given (the ingester gives seq order): that is
    the order its health rules see them. Returns one result per run, in order of first
    appearance."""
    if not segments:
        return ()
    with store.write() as cur:
        fresh = _record_fresh(cur, segments)
        runs = group_by_run(fresh)
        outcomes = _write(cur, runs, live) if fresh else {}
    if live is not None:  # committed
        live.keep(outcomes)
    written = {run.run_id: run.segments for run in runs}
    return tuple(
        _result(run.run_id, len(run.segments), written.get(run.run_id, ()), outcomes)
        for run in group_by_run(segments)
    )


def _result(
    run_id: str, given: int, new: Sequence[Segment], outcomes: dict[str, HealthOutcome]
) -> IngestResult:
    outcome = outcomes.get(run_id)
    return IngestResult(
        run_id,
        tuple(seg.header.seq for seg in new),
        sum(seg.table.num_rows for seg in new),
        given - len(new),
        tuple(outcome.transitions) if outcome else (),
        outcome.prune_reason if outcome else None,
    )


def _write(
    cur: duckdb.DuckDBPyConnection, runs: Sequence[RunBatch], live: LiveHealth | None
) -> dict[str, HealthOutcome]:
    table = batch_table(runs)
    with registered(cur, "batch", table):
        present = insert_rows(cur, table)
        if "metrics" in present:
            update_sparklines(cur, _main_loss_keys(runs))
        thin_frames(cur, table)
        record_lca_layers(cur, table)
        upsert_runs(cur, runs)
    insert_user_alerts(cur, runs)
    return evaluate_runs(cur, runs, live)


def _main_loss_keys(runs: Sequence[RunBatch]) -> dict[str, str]:
    """Run id -> the key its latest header's `loss` role names, for the runs that name one."""
    keys = {run.run_id: run.segments[-1].header.roles.get(LOSS) for run in runs}
    return {run_id: key for run_id, key in keys.items() if key}


def _record_fresh(cur: duckdb.DuckDBPyConnection, segments: Sequence[Segment]) -> list[Segment]:
    """Record the batch's `(run_id, seq)` in `segments`; the ones not recorded before, in order.

    One INSERT … ON CONFLICT DO NOTHING RETURNING both records and tells which are new, through
    the primary key's index (no scan of `segments`); a rollback undoes it with the rows."""
    unique: dict[tuple[str, int], Segment] = {}
    for seg in segments:
        unique.setdefault((seg.header.run_id, seg.header.seq), seg)
    now = utc_naive()
    keys = list(unique)
    recorded = pa.table(
        {
            "run_id": pa.array([k[0] for k in keys], pa.string()),
            "seq": pa.array([k[1] for k in keys], pa.int64()),
            "n_rows": pa.array([s.table.num_rows for s in unique.values()], pa.int64()),
            "ingested_at": pa.array([now] * len(keys), pa.timestamp("us")),
        }
    )
    with registered(cur, "batch_segments", recorded):
        inserted = cur.execute(
            """INSERT INTO segments SELECT * FROM batch_segments
               ON CONFLICT DO NOTHING RETURNING run_id, seq"""
        ).fetchall()
    new = {(str(run_id), int(seq)) for run_id, seq in inserted}
    return [seg for key, seg in unique.items() if key in new]
