"""An imported run as segments: a deterministic run id, fixed chunks, the collectors' wire format.

Idempotency is the store's own exactly-once rule put to work: the store skips a (run_id, seq) it
has recorded. So nothing here is random. The run id is the name's slug (as `make_run_id` makes
it) plus 8 hex digits of a hash of (source kind, absolute source path, run path), and a run's
events, in their source order, are cut into chunks of CHUNK_EVENTS with seq = chunk index.
Importing the same files again produces the same (run_id, seq) pairs, which the store skips.

A source that may still be growing (written to within GROWING_WITHIN_S) sends only its complete
chunks and stays `running`: its tail would change as it grows, so it waits for a later import.
A quiet source sends its tail as the closing segment, status `finished`, at seq = the tail's
chunk index (empty when the events fill whole chunks), like `SegmentWriter.close`'s final flush.
A growing import never sends that seq, so a later import still closes the run.

The bytes are `writer.encode_segment([scalars part], header)`'s, the scalars part with
`ScalarColumns.arrow()`'s columns and each event's own wall time. This module builds them from the
torch-free parts (`schema.segment_table`) because the writer module imports torch.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trainlight.collectors.run_header import RunHeader, make_run_id
from trainlight.collectors.schema import segment_table
from trainlight.collectors.sinks import Sink
from trainlight.integrations.importers.roles import guess_roles
from trainlight.integrations.importers.source import ScalarEvents, SourceRun

# Events per segment. Part of the idempotency contract: changing it re-cuts every run, so the
# same events would arrive again under other seqs. Far under the store's 1M-rows-per-segment cap.
CHUNK_EVENTS = 10_000
_MAX_UNIX_S = 1e11 - 1  # RunHeader's bound on started_at/sent_at


@dataclass(frozen=True)
class Chunk:
    """Events [start, stop) of a run as segment `seq`; `final` closes the run."""

    seq: int
    start: int
    stop: int
    final: bool = False


@dataclass(frozen=True)
class RunReport:
    """What importing one run did."""

    name: str
    run_id: str
    events: int
    sent: int  # segments sent (the store skips those it already has)
    held_back: int  # events of an incomplete chunk of a growing source, left for later
    closed: bool  # the run was closed as finished


def import_run_id(kind: str, source: str, path: str, name: str) -> str:
    """The run's id: the same for the same (kind, source, run path), whatever the day."""
    digest = hashlib.sha256("\0".join((kind, source, path)).encode()).hexdigest()[:8]
    slug = make_run_id(name).rsplit("-", 1)[0]  # make_run_id's slug, without its random part
    return f"{slug}-{digest}"


def plan_chunks(count: int, size: int, growing: bool) -> tuple[list[Chunk], int]:
    """The chunks to send for `count` events, and how many events wait for a later import."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1 events, got {size}")
    full = count // size
    chunks = [Chunk(i, i * size, (i + 1) * size) for i in range(full)]
    if growing:
        return chunks, count - full * size
    return [*chunks, Chunk(full, full * size, count, final=True)], 0


def run_header(run: SourceRun, run_id: str) -> RunHeader:
    """The header every segment of the run carries (seq and status set per segment).

    pid 0: no process of ours stands for the run, so the server's liveness sweep (which marks
    `running` runs whose pid is gone `crashed`) leaves a still-growing import alone."""
    return RunHeader(
        run_id=run_id,
        seq=0,
        name=run.name,
        project=run.project,
        group=run.group,
        tags=(run.kind,),
        config=dict(run.config),
        started_at=_clamped(min(run.events.wall_times, default=0.0)),
        roles=guess_roles(run.events.keys),
    ).validated()


def encode_chunk(events: ScalarEvents, chunk: Chunk, header: RunHeader) -> bytes:
    """Segment bytes of one chunk, sent as of its latest event (the run's clock, not ours)."""
    window = slice(chunk.start, chunk.stop)
    wall_times = events.wall_times[window]
    # An empty closing chunk is sent as of the run's last event.
    latest = max(wall_times) if wall_times else max(events.wall_times, default=0.0)
    status = "finished" if chunk.final else "running"
    header = replace(header, seq=chunk.seq, status=status, sent_at=_clamped(latest))
    if not wall_times:
        return encode_segment({"step": []}, header)
    return encode_segment(scalars_part(events, window), header)


def scalars_part(events: ScalarEvents, window: slice) -> dict[str, pa.Array]:
    """`ScalarColumns.arrow()`'s columns, wall times ROUNDED to the microsecond: the collectors
    truncate `time.time()`, but trackio's timestamps are whole microseconds, and seconds * 1e6
    in floating point often lands a hair below one, which truncation would move 1 µs early."""
    return {
        "table": pa.array(["metrics"] * len(events.steps[window]), pa.string()).dictionary_encode(),
        "step": pa.array(events.steps[window], pa.int64()),
        "key": pa.array(events.keys[window], pa.string()).dictionary_encode(),
        "value": pa.array(events.values[window], pa.float64()),
        "wall_time": pa.array(
            [round(t * 1_000_000) for t in events.wall_times[window]], pa.timestamp("us")
        ),
    }


def encode_segment(part: dict[str, Any], header: RunHeader) -> bytes:
    """`writer.encode_segment([part], header)` for one part, without the writer's torch import."""
    out = io.BytesIO()
    pq.write_table(segment_table(part, header), out, compression="zstd")
    return out.getvalue()


def send_run(run: SourceRun, sink: Sink, chunk_events: int = CHUNK_EVENTS) -> RunReport:
    """Send the run's chunks (all of them: the store skips those it has); what was done."""
    run_id = import_run_id(run.kind, str(run.source), run.path, run.name)
    header = run_header(run, run_id)
    chunks, held_back = plan_chunks(len(run.events), chunk_events, run.growing)
    for chunk in chunks:
        sink.send(run_id, chunk.seq, encode_chunk(run.events, chunk, header))
    closed = bool(chunks) and chunks[-1].final
    return RunReport(run.name, run_id, len(run.events), len(chunks), held_back, closed)


def _clamped(seconds: float) -> float:
    return min(max(float(seconds), 0.0), _MAX_UNIX_S)
