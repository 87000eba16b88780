"""Where a Monitor's segments go: the store's inbox directory, or a trainlight server over HTTP.

Both transports share one rule: a segment is never lost because the destination is unavailable.
It stays where it is (in memory for an unwritable inbox, in the local outbox for HTTP) and is
retried on every flush cycle, in sequence order. Sinks never raise: they report problems once.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from trainlight.collectors.problems import Problems
from trainlight.collectors.schema import (
    StopRequest,
    StoreLayout,
    segment_file_name,
    write_atomically,
)
from trainlight.collectors.store_files import read_stop_request

# Segments held in memory while the destination is unwritable; beyond this the oldest are dropped
# (and counted), so a training job with a full disk cannot run out of memory because of us.
DEFAULT_MAX_BACKLOG_BYTES = 256 * 1024 * 1024


class Sink(Protocol):
    def send(self, run_id: str, seq: int, payload: bytes) -> None:
        """Accept one segment; deliver now or keep it for a later `retry`. Never raises."""

    def retry(self) -> None:
        """Try again to deliver what is pending. Never raises."""

    def pending(self) -> int:
        """How many segments are not yet delivered."""

    def poll_stop(self, run_id: str) -> StopRequest | None:
        """A stop request for the run, if one has been made. Never raises."""

    def fate(self) -> str:
        """What becomes of undelivered segments when the process exits (for the warning)."""

    def finish_by(self, deadline: float | None) -> None:
        """No delivery attempt may run past `deadline` (monotonic clock; None: no limit)."""


class MemoryBacklog:
    """Segments waiting in memory, oldest first, bounded in bytes (oldest dropped and counted)."""

    def __init__(self, problems: Problems, max_bytes: int = DEFAULT_MAX_BACKLOG_BYTES) -> None:
        self._items: deque[tuple[str, int, bytes]] = deque()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._problems = problems

    def push(self, run_id: str, seq: int, payload: bytes) -> None:
        self._items.append((run_id, seq, payload))
        self._bytes += len(payload)
        while self._bytes > self._max_bytes and len(self._items) > 1:
            _, old_seq, old = self._items.popleft()
            self._bytes -= len(old)
            self._problems.report(
                "backlog_dropped",
                f"segment backlog exceeded {self._max_bytes} bytes; dropping the oldest "
                f"segments (first: seq {old_seq})",
            )

    def drain_into(self, deliver: _Deliver) -> None:
        """Deliver pending segments in order; stop at the first that fails (kept for later)."""
        while self._items:
            run_id, seq, payload = self._items[0]
            if not deliver(run_id, seq, payload):
                return
            self._items.popleft()
            self._bytes -= len(payload)

    def __len__(self) -> int:
        return len(self._items)


class _Deliver(Protocol):
    def __call__(self, run_id: str, seq: int, payload: bytes) -> bool: ...


class InboxSink:
    """Writes segments into `<store>/inbox/<run_id>/` for `serve` or `ingest` to pick up."""

    def __init__(self, layout: StoreLayout, problems: Problems) -> None:
        self.layout = layout
        self._problems = problems
        self._backlog = MemoryBacklog(problems)

    def send(self, run_id: str, seq: int, payload: bytes) -> None:
        self._backlog.push(run_id, seq, payload)
        self.retry()

    def retry(self) -> None:
        self._backlog.drain_into(self._write)

    def pending(self) -> int:
        return len(self._backlog)

    def fate(self) -> str:
        return f"the inbox {self.layout.inbox} stayed unwritable; they are lost with this process"

    def finish_by(self, deadline: float | None) -> None:
        return None  # local file writes: nothing to cut short

    def poll_stop(self, run_id: str) -> StopRequest | None:
        try:
            return read_stop_request(self.layout.control_path(run_id))
        except (OSError, ValueError) as exc:  # ValueError: a run id that names no file
            self._problems.report("control_read", f"cannot read the stop-request file: {exc}")
            return None

    def _write(self, run_id: str, seq: int, payload: bytes) -> bool:
        try:
            directory = self.layout.run_inbox(run_id)
            directory.mkdir(parents=True, exist_ok=True)
            write_atomically(directory / segment_file_name(seq), payload)
            return True
        except OSError as exc:
            self._problems.report(
                "inbox_write",
                f"cannot write to the store inbox {self.layout.inbox} ({exc}); "
                "keeping segments in memory and retrying",
            )
            return False


class NullSink:
    """The sink of a rank that does not write (ranks 1+ of a distributed job): keeps nothing."""

    def send(self, run_id: str, seq: int, payload: bytes) -> None:
        return None

    def retry(self) -> None:
        return None

    def pending(self) -> int:
        return 0

    def poll_stop(self, run_id: str) -> StopRequest | None:
        return None

    def fate(self) -> str:
        return "this rank writes nothing"

    def finish_by(self, deadline: float | None) -> None:
        return None
