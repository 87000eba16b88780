"""The ingester: moves segment files from the store's inbox into DuckDB, run by run, in order.

`trainlight serve` runs `Ingester.run` on a thread; `trainlight ingest` calls `ingest_pending` once.
A file that cannot be ingested is moved to `rejected/` with a note, so it neither blocks the run's
later segments nor disappears. The liveness sweep marks as crashed the runs whose process is gone
without having closed the run (`kill -9`, the OOM killer...): only for processes in the server's
own boot and pid namespace, where a pid means the same process (not across containers or nodes).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import duckdb
import pyarrow as pa

from trainlight.app.store.control import publish_stop
from trainlight.app.store.database import Store
from trainlight.app.store.ingest import Segment, SegmentError, decode_segment, ingest_segments
from trainlight.collectors.schema import list_segment_files, process_namespace, write_atomically

log = logging.getLogger("trainlight.ingest")
# Errors that mean "this data cannot be stored", as opposed to "storing failed right now".
_DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.ConstraintException,
    duckdb.InvalidInputException,
    duckdb.OutOfRangeException,
    pa.ArrowException,
    ValueError,
    TypeError,
    OverflowError,
)


@dataclass
class IngestStats:
    segments: int = 0
    rows: int = 0
    duplicates: int = 0
    rejected: int = 0
    crashed_runs: list[str] = field(default_factory=list)


class Ingester:
    """Ingests a store's inbox; safe to run on one thread while readers use the store."""

    def __init__(
        self, store: Store, namespace: str | None = None, max_batch_rows: int = 1_000_000
    ) -> None:
        self.store = store
        # Runs whose pids live in this namespace (same boot, same pid namespace) can be checked.
        self.namespace = process_namespace() if namespace is None else namespace
        # One transaction per batch of a run's segments, capped so memory and commit stay bounded.
        self.max_batch_rows = max_batch_rows

    def ingest_pending(self) -> IngestStats:
        stats = IngestStats()
        for run_id, files in _by_run(list_segment_files(self.store.layout.inbox)):
            try:
                for batch in self._batches(run_id, files, stats):
                    self._ingest_batch_or_isolate(batch, stats)
            except Exception:
                # Keep the run's order: its remaining segments wait for the next pass.
                log.exception("could not ingest segments of run %s; will retry", run_id)
        stats.crashed_runs = self.sweep_liveness()
        return stats

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Ingest until `stop` is set; errors are logged and retried, never fatal to the server."""
        while not stop.is_set():
            try:
                self.ingest_pending()
            except Exception:
                log.exception("ingest pass failed; retrying")
            stop.wait(interval)

    def _batches(
        self, run_id: str, files: list[tuple[int, Path]], stats: IngestStats
    ) -> Iterator[list[tuple[Segment, Path]]]:
        """Decoded segments of one run in seq order, grouped so no batch exceeds the row cap."""
        batch: list[tuple[Segment, Path]] = []
        rows = 0
        for seq, path in files:
            segment = self._decode(run_id, seq, path, stats)
            if segment is None:
                continue
            if batch and rows + segment.table.num_rows > self.max_batch_rows:
                yield batch
                batch, rows = [], 0
            batch.append((segment, path))
            rows += segment.table.num_rows
        if batch:
            yield batch

    def _decode(self, run_id: str, seq: int, path: Path, stats: IngestStats) -> Segment | None:
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            segment = decode_segment(payload)
            if (segment.header.run_id, segment.header.seq) != (run_id, seq):
                raise SegmentError(
                    f"file {run_id}/{path.name} holds segment {segment.header.seq} of run "
                    f"{segment.header.run_id}"
                )
        except SegmentError as exc:
            self._reject(path, str(exc))
            stats.rejected += 1
            return None
        return segment

    def _ingest_batch_or_isolate(
        self, batch: list[tuple[Segment, Path]], stats: IngestStats
    ) -> None:
        """Ingest a batch; if it fails for its data, find and reject the segment at fault.

        Only errors about the data are isolated, segment by segment, so one poisonous segment
        cannot block its run; anything else (a full disk, a bug) is raised and retried later,
        never blamed on the data.
        """
        try:
            self._ingest_batch(batch, stats)
            return
        except _DATA_ERRORS as exc:
            if len(batch) == 1:
                path = batch[0][1]
                self._reject(path, f"could not be ingested: {exc!r}")
                stats.rejected += 1
                return
        for item in batch:
            self._ingest_batch_or_isolate([item], stats)

    def _ingest_batch(self, batch: list[tuple[Segment, Path]], stats: IngestStats) -> None:
        result = ingest_segments(self.store, [segment for segment, _ in batch])
        if result.prune_reason is not None:
            publish_stop(self.store, result.run_id, result.prune_reason)
        for _, path in batch:
            path.unlink(missing_ok=True)
        stats.segments += len(result.seqs)
        stats.rows += result.rows
        stats.duplicates += result.duplicates

    def _reject(self, path: Path, reason: str) -> None:
        rejected = self.store.layout.root / "rejected"
        rejected.mkdir(exist_ok=True)
        target = rejected / f"{path.parent.name}-{path.name}"
        os.replace(path, target)
        write_atomically(target.with_suffix(".reason.txt"), reason.encode())
        log.warning("rejected segment %s: %s (moved to %s)", path, reason, target)

    def sweep_liveness(self) -> list[str]:
        """Mark `crashed` the running runs whose process, visible from here, no longer exists."""
        if not self.namespace:
            return []
        with self.store.read() as cur:
            rows = cur.execute(
                "SELECT run_id, pid FROM runs WHERE status = 'running' AND pid_namespace = ?",
                [self.namespace],
            ).fetchall()
        dead = [(run_id, pid) for run_id, pid in rows if pid and not _process_alive(pid)]
        pending = {run_id for run_id, _, _ in list_segment_files(self.store.layout.inbox)}
        crashed = [run_id for run_id, _ in dead if run_id not in pending]
        for run_id in crashed:
            pid = dict(dead)[run_id]
            with self.store.write() as cur:
                cur.execute(
                    """UPDATE runs SET status = 'crashed', stop_reason = ?
                       WHERE run_id = ? AND status = 'running'""",
                    [f"process {pid} exited without closing the run", run_id],
                )
        return crashed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A zombie (killed, not yet reaped by its parent) still answers signal 0.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _by_run(files: list[tuple[str, int, Path]]) -> Iterator[tuple[str, list[tuple[int, Path]]]]:
    for run_id, group in groupby(files, key=lambda item: item[0]):
        yield run_id, [(seq, path) for _, seq, path in group]
