"""The flush thread: drains the record buffer into segments, ships them, polls for stop requests.

Everything slow (tensor copies, Parquet encoding, file and network I/O) happens here, on one daemon
thread, every `flush_interval` seconds, so the training loop only ever appends to a buffer. A
segment is also sent when there is nothing new but a heartbeat is due, which is how the server
tells a quiet run from a dead one. Any exception is reported once and counted; none escapes.
"""

from __future__ import annotations

import functools
import io
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from trainlight.collectors.buffer import Record, RecordBuffer
from trainlight.collectors.health.evaluator import RunHealth, spec_from_header
from trainlight.collectors.health.verdict import RED
from trainlight.collectors.problems import ProblemCounts, Problems
from trainlight.collectors.run_header import MAX_SEGMENT_ALERTS
from trainlight.collectors.scalars import ScalarColumns, records_to_columns
from trainlight.collectors.schema import (
    HEADER_KEY,
    TERMINAL_STATUSES,
    RunHeader,
    StopRequest,
    segment_table,
)
from trainlight.collectors.sinks import Sink
from trainlight.collectors.tensor_slots import TensorSlots

MAX_PENDING_ALERTS = 1000  # more than this waiting: the oldest go


class RowSource(Protocol):
    """Something beside `log()` that produces rows: activation statistics, runaway distances...

    `collect` runs on the flush thread (so it may copy device tensors to the host) and returns
    column data in the segment schema's names (with a `table` column), a list of such column
    sets (one per table kind), or None when idle.
    """

    def collect(
        self,
    ) -> Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]] | None: ...


def build_segment(parts: Sequence[Mapping[str, Any]], header: RunHeader) -> pa.Table:
    """One segment table from several column sets (each a table's worth of rows)."""
    tables = [segment_table(part, header) for part in parts if len(part["step"])]
    if not tables:
        return segment_table({"step": []}, header)
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.replace_schema_metadata({HEADER_KEY: header.to_bytes()})


def encode_segment(parts: Sequence[Mapping[str, Any]], header: RunHeader) -> bytes:
    return _parquet(build_segment(parts, header))


def _parquet(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


@functools.cache
def _warm_up_arrow() -> None:
    """Pay pyarrow's lazy one-time setup (it imports pandas on the first `pa.array`, ~0.4-1 s)
    in `Monitor(...)`, before training starts: paid by the first flush instead, it delayed the
    first segment so long that a `kill -9` in the first second lost more than one flush interval.
    """
    pa.array([0.0])


class SegmentWriter:
    """Owns the run's sequence numbers and the flush thread."""

    def __init__(
        self,
        header: RunHeader,
        buffer: RecordBuffer,
        slots: TensorSlots,
        sink: Sink,
        problems: Problems,
        *,
        flush_interval: float,
        heartbeat_interval: float,
        step_of: Callable[[], int] = lambda: 0,
    ) -> None:
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {flush_interval}")
        if heartbeat_interval < flush_interval:
            raise ValueError(
                f"heartbeat_interval ({heartbeat_interval}) must be >= flush_interval "
                f"({flush_interval})"
            )
        self.header = header
        self.buffer = buffer
        self.slots = slots
        # Host values of tensor slots taken from `slots` whose records were not drained yet.
        self._carry_base = 0
        self._carry: list[float | None] = []
        self.sink = sink
        self.problems = problems
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self.stop_request: StopRequest | None = None
        self.sources: list[RowSource] = []
        # Collected after every other source, so their troubles of this flush are counted too.
        self._problem_counts = ProblemCounts(problems, step_of)
        self.lost_rows = 0  # rows that could not be encoded (reported; stored in dropped_rows)
        self._health: RunHealth | None = None  # local rules, only when the run auto-prunes
        self.rows_written = 0
        # mon.alert() messages waiting for the next segment (append/popleft: no lock needed)
        self.alerts: deque[Mapping[str, Any]] = deque(maxlen=MAX_PENDING_ALERTS)
        self._seq = 0
        self._last_sent = 0.0
        self._lock = threading.Lock()  # one flush at a time (thread vs. close)
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainlight-flush", daemon=True)
        _warm_up_arrow()

    def start(self) -> None:
        # The first flush (announcing the run) happens on the thread too: a slow disk or an
        # unresponsive server must not delay the training script's `Monitor(...)` line.
        self._thread.start()

    def close(self, status: str, stop_reason: str = "", timeout: float = 10.0) -> None:
        """Final flush with the run's terminal status, then delivery: all within `timeout` s.

        The flush thread gets half the time to end its current flush; if it is still delivering
        then, its request is cut short (the segment stays pending), so the lock is never waited
        on past the deadline. Whatever is undelivered at the deadline is left to `sink.fate()`.
        """
        deadline = time.monotonic() + timeout
        self._wake.set()
        self._thread.join(timeout=timeout / 2)
        if self._thread.is_alive():
            self.sink.finish_by(time.monotonic())  # frees the thread from a hanging request
        locked = self._lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        self.sink.finish_by(deadline)
        if locked:
            try:
                self._guarded(lambda: self._flush_locked(True, status, stop_reason))
            finally:
                self._lock.release()
        else:
            self.problems.report(
                "close_timeout",
                f"the flush thread did not finish within {timeout:g} s; the run's final "
                f"status ({status}) was not written",
            )
        while self.sink.pending() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.2, self.flush_interval, left))
            self._guarded(self.sink.retry)
        if self.sink.pending():
            self.problems.report(
                "undelivered_at_exit",
                f"{self.sink.pending()} segment(s) not delivered at exit (close timeout "
                f"{timeout:g} s): {self.sink.fate()}",
            )

    def flush(self, force: bool = False, status: str | None = None, stop_reason: str = "") -> None:
        with self._lock:
            self._guarded(lambda: self._flush_locked(force, status, stop_reason))
            self._guarded(self._poll_stop)

    # -- internals -----------------------------------------------------------------------------
    def _loop(self) -> None:
        self.flush(force=True)
        while not self._wake.wait(self.flush_interval):
            self.flush()

    def _flush_locked(self, force: bool, status: str | None, stop_reason: str) -> None:
        parts = [self._columns(self.buffer.drain()).arrow(), *self._collect(self.sources)]
        heartbeat_due = time.time() - self._last_sent >= self.heartbeat_interval
        if not (force or heartbeat_due or self.alerts or any(len(part["step"]) for part in parts)):
            self.sink.retry()
            return
        if status is not None:
            self.header = replace(self.header, status=status, stop_reason=stop_reason)
        now = time.time()
        header = replace(
            self.header,
            seq=self._seq,
            sent_at=now,
            dropped_rows=self.buffer.dropped + self.lost_rows,
            alerts=self._take_alerts(),
        )
        if self.buffer.dropped:
            self.problems.report(
                "buffer_full",
                f"record buffer full ({self.buffer.capacity} records); dropping oldest records "
                "(count stored as runs.dropped_rows)",
            )
        # Counts ride along with a segment that is due anyway: a failing disk whose failures
        # are counted must not cause a segment per flush (each of which would fail too).
        parts += self._collect([self._problem_counts])
        try:
            table = build_segment(parts, header)
            payload = _parquet(table)
        except Exception as exc:  # rows that cannot be encoded are counted, never retried forever
            self.lost_rows += sum(len(part["step"]) for part in parts)
            self.problems.report("encode_failed", f"could not encode a segment, rows lost: {exc!r}")
            table = build_segment([], header)
            payload = _parquet(table)
        self._guarded(lambda: self._judge_locally(table, header))
        self.sink.send(header.run_id, self._seq, payload)
        self._seq += 1
        self._last_sent = now
        self.rows_written += table.num_rows

    def _take_alerts(self) -> tuple[Mapping[str, Any], ...]:
        taken: list[Mapping[str, Any]] = []
        while self.alerts and len(taken) < MAX_SEGMENT_ALERTS:
            taken.append(self.alerts.popleft())
        return tuple(taken)

    def _collect(self, sources: Sequence[RowSource]) -> list[Mapping[str, Any]]:
        """Column sets for one segment from each source's rows."""
        parts: list[Mapping[str, Any]] = []
        for source in sources:
            try:
                part = source.collect()
            except Exception as exc:  # one broken source must not cost the others' rows
                self.problems.report(
                    f"source_failed:{type(source).__name__}",
                    f"{type(source).__name__} failed to hand over rows: {exc!r}",
                )
                continue
            if isinstance(part, Mapping):
                parts.append(part)
            elif part is not None:
                parts.extend(part)
        return parts

    def _columns(self, records: list[Record]) -> ScalarColumns:
        base, values = self.slots.take_all()
        if self._carry:
            base, values = self._carry_base, self._carry + values
        columns = records_to_columns(records, base, values)
        if columns.missing:
            key, step = columns.missing[0]
            self.problems.report(
                "tensor_slot_missing",
                f"{len(columns.missing)} logged tensor value(s) were lost before they could be "
                f"read (first: {key!r} at step {step}); they are left out, not recorded as NaN",
            )
        # Slots after the last one used belong to records logged after the drain: keep them.
        keep_from = max(columns.max_slot + 1, base) - base
        self._carry_base, self._carry = base + keep_from, values[keep_from:]
        return columns

    def _judge_locally(self, table: pa.Table, header: RunHeader) -> None:
        """With `prune_on`, run the server's rules here too, so pruning needs no server."""
        if not header.prune_on:
            return
        spec = spec_from_header(
            header.roles, header.health, header.prune_on, header.planned_steps()
        )
        if self._health is None:
            self._health = RunHealth(spec)
        final = header.status in TERMINAL_STATUSES
        result = self._health.feed(table, spec, final=final, sent_at=header.sent_at)
        for change in result.transitions:
            if change.state == RED and change.signal in header.prune_on and not self.stop_request:
                reason = f"auto-pruned: {change.signal} red: {change.reason}"
                self.stop_request = StopRequest(reason)

    def _poll_stop(self) -> None:
        if self.stop_request is None:
            self.stop_request = self.sink.poll_stop(self.header.run_id)

    def _guarded(self, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # monitoring must never crash training
            self.problems.report(
                f"flush_error:{type(exc).__name__}", f"flush failed: {exc!r} (will retry)"
            )
