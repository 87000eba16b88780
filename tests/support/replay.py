"""Record a real run's rows once, then replay them into a store cut into other segments.

`record` reads the segments a Monitor left in a store's inbox (without ingesting them) and joins
their rows in sequence order: the run's row stream, as the server would receive it. Within a
segment the writer groups rows by kind (logged scalars, then each source's rows), an order the
server does not rely on (a segment is taken whole), so each segment's rows are put in step order
first: the stream is then the run's rows in the order they were recorded, and it must never go
back in step from one segment to the next (checked). Cutting it anywhere is what another flush
clock would have sent. `replay`
cuts that stream at random row boundaries (mid-step included), gives each piece the run's header
with increasing `seq` (status `running` until the last piece, which carries the run's final
status), and feeds the pieces to a fresh store through the real ingest path: the inbox and
`Ingester`, or `ingest_batch` as the HTTP endpoint does, optionally closing and reopening the
store between two pieces (a server restart: the rules resume from `health_state`).
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainlight.app.store.database import Store
from trainlight.app.store.ingest.health import LiveHealth
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.ingest.transaction import Segment, decode_segment, ingest_batch
from trainlight.collectors.schema import (
    HEADER_KEY,
    RunHeader,
    StoreLayout,
    list_segment_files,
    write_atomically,
)


@dataclass(frozen=True)
class Recording:
    header: RunHeader  # of the run's last segment (its final status)
    rows: pa.Table  # every row, in the order the segments delivered them
    segments: int


def record(store_dir: Path, run_id: str) -> Recording:
    """The row stream of a run the Monitor wrote into `store_dir`'s inbox."""
    layout = StoreLayout.resolve(store_dir)
    files = sorted((s, path) for rid, s, path in list_segment_files(layout.inbox) if rid == run_id)
    segments = [decode_segment(path.read_bytes()) for _, path in files]
    tables = [_by_step(seg.table.replace_schema_metadata(None)) for seg in segments]
    rows = pa.concat_tables(tables)
    steps = rows["step"].to_numpy()
    late = np.flatnonzero(np.diff(steps) < 0)
    assert late.size == 0, f"rows delivered after a later step's: at {steps[late[:5] + 1]}"
    return Recording(segments[-1].header, rows, len(segments))


def _by_step(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("step", "ascending")]))  # stable


def cut(recording: Recording, rng: np.random.Generator, max_pieces: int = 40) -> list[Segment]:
    """The rows cut at random boundaries into 1..max_pieces segments (some empty: heartbeats)."""
    n = recording.rows.num_rows
    pieces = int(rng.integers(1, max_pieces + 1))
    bounds = np.sort(rng.integers(0, n + 1, size=pieces - 1))
    edges = [0, *bounds.tolist(), n]
    out = []
    for seq, (start, end) in enumerate(itertools.pairwise(edges)):
        last = seq == len(edges) - 2
        header = replace(
            recording.header,
            seq=seq,
            status=recording.header.status if last else "running",
            stop_reason=recording.header.stop_reason if last else "",
        )
        table = recording.rows.slice(start, end - start)
        out.append(Segment(header, table.replace_schema_metadata({HEADER_KEY: header.to_bytes()})))
    return out


def replay(
    store_dir: Path,
    runs: list[list[Segment]],
    rng: np.random.Generator,
    *,
    via_inbox: bool,
    restart: bool,
) -> None:
    """Ingest every run's segments into a fresh store, interleaving the runs, in random
    batches; with `restart`, the store is closed and reopened once half-way."""
    layout = StoreLayout.resolve(store_dir)
    store = Store(layout)
    queue = [(i, seg) for i, segments in enumerate(runs) for seg in segments]
    queue.sort(key=lambda item: (item[1].header.seq, item[0]))
    restart_at = len(queue) // 2 if restart else -1
    done = 0
    # One ingester (and live rule states) per server lifetime, as `trainlight serve` has.
    ingester, live = Ingester(store), LiveHealth()
    try:
        while done < len(queue):
            size = int(rng.integers(1, 8))
            if done < restart_at <= done + size:
                size = restart_at - done
            batch = [seg for _, seg in queue[done : done + size]]
            if via_inbox:
                for seg in batch:
                    path = layout.segment_path(seg.header.run_id, seg.header.seq)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_atomically(path, _parquet(seg.table))
                ingester.ingest_pending()
            else:
                ingest_batch(store, batch, live)
            done += size
            if done == restart_at:
                store.close()
                store = Store(layout)
                ingester, live = Ingester(store), LiveHealth()
    finally:
        store.close()


def health_rows(store_dir: Path, run_id: str) -> list[tuple[object, ...]]:
    """The run's `health` table in the order it was written, and the rows the rules derived."""
    store = Store(StoreLayout.resolve(store_dir))
    try:
        with store.read() as cur:
            changes = cur.execute(
                "SELECT signal, state, step, reason FROM health WHERE run_id = ? ORDER BY seq",
                [run_id],
            ).fetchall()
            derived = cur.execute(
                """SELECT 'derived', key, step, value FROM metrics
                   WHERE run_id = ? AND key LIKE 'catch/%' ORDER BY step, key""",
                [run_id],
            ).fetchall()
    finally:
        store.close()
    return changes + derived


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()
