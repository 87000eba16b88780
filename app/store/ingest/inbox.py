"""The ingester: moves segment files from the store's inbox into DuckDB, each run's in seq order.

`trainlight serve` runs `Ingester.run` on a thread; `trainlight ingest` calls `ingest_pending` once.
A pass takes every pending segment of every run into one transaction (`ingest.ingest_batch`;
more only past a row cap), because per-transaction costs, not rows, limit small segments from
many runs. A file that cannot be ingested is moved to `rejected/` with a note, so it neither
blocks the run's later segments, nor other runs, nor disappears: any exception while reading or
decoding one entry quarantines that entry alone (app/store/ingest/quarantine.py). The liveness sweep
marks as crashed the runs whose process is gone without having closed the run (`kill -9`, the OOM
killer...): only for processes in the server's own boot and pid namespace, where a pid means the
same process (not across containers or nodes).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from trainlight.app.arrivals import Arrivals
from trainlight.app.store.control import publish_stop
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.health import LiveHealth
from trainlight.app.store.ingest.orphans import remove_orphan_temporaries
from trainlight.app.store.ingest.quarantine import foreign_entries, quarantine
from trainlight.app.store.ingest.transaction import (
    Segment,
    SegmentError,
    decode_segment,
    ingest_batch,
)
from trainlight.collectors.schema import process_namespace
from trainlight.collectors.store_files import parse_segment_file_name, run_entries, segment_files

log = logging.getLogger("trainlight.ingest")
_Item = tuple[Segment, Path]  # a decoded segment and the inbox file it came from
_UNLINK_THREADS = 4
ORPHAN_SWEEP_S = 60.0  # how often the serving loop looks for abandoned temporaries
# Passes woken by arrivals are at least this far apart, so a stream of segments from many runs
# is taken in batches (per-pass costs: the inbox walk, the liveness sweep, a transaction).
MIN_PASS_GAP_S = 0.2
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
        self,
        store: Store,
        namespace: str | None = None,
        max_batch_rows: int = 1_000_000,
        after_pass: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.after_pass = after_pass  # e.g. recording alerts of what the pass ingested
        # Runs whose pids live in this namespace (same boot, same pid namespace) can be checked.
        self.namespace = process_namespace() if namespace is None else namespace
        # One transaction per batch of every run's pending segments, capped so memory and
        # commit stay bounded.
        self.max_batch_rows = max_batch_rows
        self._stuck: set[Path] = set()  # entries that failed and could not be quarantined
        self._live = LiveHealth()  # runs' rule states between passes
        _load_arrow_scan_modules(store)

    def ingest_pending(self) -> IngestStats:
        """Ingest every pending segment of every run, each run's in seq order, in as few
        transactions as the row cap allows."""
        stats = IngestStats()
        held: set[str] = set()  # runs whose segments wait for the next pass after a failure
        entries = run_entries(self.store.layout.inbox)  # one walk of the inbox per pass
        for path in foreign_entries(entries):
            self._reject(path, "not a segment file name (ASCII digits + .parquet)", stats)
        pending = [f for f in segment_files(entries) if f[2] not in self._stuck]
        for batch in self._batches(pending, stats, held):
            self._ingest_or_hold(batch, stats, held)
        stats.crashed_runs = self.sweep_liveness()
        return stats

    def run(
        self,
        stop: threading.Event,
        interval: float = 0.5,
        arrivals: Arrivals | None = None,
        min_gap: float = MIN_PASS_GAP_S,
    ) -> None:
        """Ingest until `stop` is set; errors are logged and retried, never fatal to the server.

        A pass starts `interval` after the last one, or as soon as `arrivals` says a segment was
        acknowledged, but never within `min_gap` of the last one's start."""
        swept = 0.0
        while not stop.is_set():
            started = time.monotonic()
            try:
                if started - swept > ORPHAN_SWEEP_S:
                    swept = started
                    remove_orphan_temporaries(self.store.layout.inbox)
                self.ingest_pending()
                if self.after_pass is not None:
                    self.after_pass()
            except Exception:
                log.exception("ingest pass failed; retrying")
            if arrivals is None:
                stop.wait(interval)
            elif arrivals.wait(interval):
                stop.wait(max(0.0, min_gap - (time.monotonic() - started)))

    def _batches(
        self, files: list[tuple[str, int, Path]], stats: IngestStats, held: set[str]
    ) -> Iterator[list[_Item]]:
        """Decoded segments, run after run and each run's in seq order, grouped so no batch
        exceeds the row cap; a run held after a failure drops out of the batches to come."""
        batch: list[_Item] = []
        rows = 0
        for run_id, seq, path in files:
            if run_id in held:
                continue
            segment = self._decode(run_id, seq, path, stats)
            if segment is None:
                continue
            if batch and rows + segment.table.num_rows > self.max_batch_rows:
                yield [item for item in batch if item[0].header.run_id not in held]
                batch, rows = [], 0
            batch.append((segment, path))
            rows += segment.table.num_rows
        if batch:
            yield [item for item in batch if item[0].header.run_id not in held]

    def _decode(self, run_id: str, seq: int, path: Path, stats: IngestStats) -> Segment | None:
        """The entry's segment, or None; any failure to read or decode it (a directory, an
        unreadable file, a bomb, a header nested too deep) quarantines this entry alone."""
        try:
            segment = decode_segment(path.read_bytes())
            if (segment.header.run_id, segment.header.seq) != (run_id, seq):
                raise SegmentError(
                    f"file {run_id}/{path.name} holds segment {segment.header.seq} of run "
                    f"{segment.header.run_id}"
                )
        except FileNotFoundError:
            return None
        except SegmentError as exc:
            self._reject(path, str(exc), stats)
            return None
        except Exception as exc:  # whatever it is, it must not stop the pass
            self._reject(path, f"could not be read: {exc!r}", stats)
            return None
        return segment

    def _ingest_or_hold(self, batch: list[_Item], stats: IngestStats, held: set[str]) -> None:
        """Ingest a batch; if it fails for a reason other than its data, retry it run by run,
        so that a problem of one run (a bug a segment triggers) holds back only that run's
        segments, until the next pass, in order; the others go in."""
        if not batch:
            return
        try:
            self._ingest_or_isolate(batch, stats)
            return
        except Exception:
            runs = _by_run(batch)
            if len(runs) == 1:
                log.exception("could not ingest segments of run %s; will retry", runs[0][0])
                held.add(runs[0][0])
                return
        for run_id, items in runs:  # those already ingested or rejected are gone: skipped
            try:
                self._ingest_or_isolate([i for i in items if i[1].exists()], stats)
            except Exception:
                log.exception("could not ingest segments of run %s; will retry", run_id)
                held.add(run_id)

    def _ingest_or_isolate(self, batch: list[_Item], stats: IngestStats) -> None:
        """Ingest a batch; if it fails for its data, find and reject the segment at fault.

        Only errors about the data are isolated, by halving the batch (each half keeps every
        run's segments in order), so one poisonous segment costs ~2·log2(n) transactions and
        never blocks its run; anything else (a full disk, a bug) is raised, never blamed on
        the data.
        """
        if not batch:
            return
        try:
            self._ingest_batch(batch, stats)
            return
        except _DATA_ERRORS as exc:
            if len(batch) == 1:
                self._reject(batch[0][1], f"could not be ingested: {exc!r}", stats)
                return
        half = len(batch) // 2
        self._ingest_or_isolate(batch[:half], stats)
        self._ingest_or_isolate(batch[half:], stats)

    def _ingest_batch(self, batch: list[_Item], stats: IngestStats) -> None:
        results = ingest_batch(self.store, [segment for segment, _ in batch], self._live)
        for result in results:  # committed: a stop that fails to publish must not undo it
            if result.prune_reason is not None:
                self._publish(result.run_id, result.prune_reason)
        _unlink([path for _, path in batch])
        for result in results:
            stats.segments += len(result.seqs)
            stats.rows += result.rows
            stats.duplicates += result.duplicates

    def _publish(self, run_id: str, reason: str) -> None:
        """Write the run's stop file; if that fails, the stop stays in `runs.stop_requested`
        (what HTTP collectors read) and the failure is logged."""
        try:
            publish_stop(self.store, run_id, reason)
        except OSError:
            log.exception("could not publish the auto-prune stop of run %s", run_id)

    def _reject(self, path: Path, reason: str, stats: IngestStats) -> None:
        """Quarantine one entry; one that cannot even be moved is skipped from now on."""
        if quarantine(self.store.layout, path, reason) is None and path.exists():
            self._stuck.add(path)
        stats.rejected += 1

    def sweep_liveness(self) -> list[str]:
        """End the running runs whose process, visible from here, no longer exists: `crashed`,
        or `stopped` (with the stop's reason) when it had been asked to stop: whoever ended it
        (a sweep scheduler tearing down its worker) may have cut off its last segment."""
        if not self.namespace:
            return []
        with self.store.read() as cur:
            rows = cur.execute(
                "SELECT run_id, pid FROM runs WHERE status = 'running' AND pid_namespace = ?",
                [self.namespace],
            ).fetchall()
        dead = [(run_id, pid) for run_id, pid in rows if pid and not _process_alive(pid)]
        # A dead run's segments still waiting (its last words) are ingested first.
        layout = self.store.layout
        crashed = [run_id for run_id, _ in dead if not _has_segments(layout.run_inbox(run_id))]
        for run_id in crashed:
            pid = dict(dead)[run_id]
            with self.store.write() as cur:
                cur.execute(
                    """UPDATE runs
                       SET status = CASE WHEN stop_requested THEN 'stopped' ELSE 'crashed' END,
                           stop_reason = CASE WHEN stop_requested THEN stop_reason ELSE ? END
                       WHERE run_id = ? AND status = 'running'""",
                    [f"process {pid} exited without closing the run", run_id],
                )
        return crashed


def _load_arrow_scan_modules(store: Store) -> None:
    """Make DuckDB import what it imports the first time a Python object is registered (pandas
    among others), now, before the server's threads start. Done by the ingest thread's first
    batch, the import ran while request threads serialised JSON, and plotly's encoder, which
    looks pandas up in `sys.modules`, found it half-imported: HTTP 500s under load."""
    with store.read() as cur:
        cur.register("import_probe", pa.table({"x": pa.array([0], pa.int8())}))
        cur.unregister("import_probe")


def _unlink(paths: list[Path]) -> None:
    """Delete ingested files. A few threads: on this ext4 an unlink of a freshly fsynced file
    often blocks ~1-4 ms on the journal, so 1,000 in a row took 1.4-2.3 s and in 4 threads
    ~0.1 s."""
    if len(paths) < _UNLINK_THREADS * 2:
        for path in paths:
            path.unlink(missing_ok=True)
        return
    with ThreadPoolExecutor(_UNLINK_THREADS, thread_name_prefix="trainlight-unlink") as pool:
        list(pool.map(lambda path: path.unlink(missing_ok=True), paths))


def _has_segments(run_inbox: Path) -> bool:
    try:
        return any(parse_segment_file_name(name) is not None for name in os.listdir(run_inbox))
    except OSError:
        return False


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


def _by_run(batch: list[_Item]) -> list[tuple[str, list[_Item]]]:
    runs: dict[str, list[_Item]] = {}
    for item in batch:
        runs.setdefault(item[0].header.run_id, []).append(item)
    return list(runs.items())
