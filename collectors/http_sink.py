"""HTTP transport: segments go to `POST /api/v1/ingest` of a trainlight server.

Every segment is first written to a local outbox (`TRAINLIGHT_OUTBOX`, default
`~/.cache/trainlight/outbox`) and deleted only once the server acknowledges it, so a server that is
down, restarting or unreachable costs no data: delivery is retried with backoff, in sequence order.
Segments left by an earlier process (one that was killed, say) are delivered too; the server's
(run_id, seq) bookkeeping makes a repeated delivery harmless.

Every request has a total deadline (deadline_http.py), not a per-read timeout, and `finish_by`
caps all of them at `close()`'s deadline, so no server, however slow, holds the training process
at exit: what was not acknowledged by then stays in the outbox. A saturated server answering 429
or 503 with `Retry-After` is left alone that long (at most `MAX_RETRY_AFTER_S`) instead of being
retried on the usual backoff; all waiting is on the flush thread, never in `log()`. A server with
receiver processes gets a run's requests on the receiver it advertised for it (receiver_routes.py).
"""

from __future__ import annotations

import fcntl
import http.client
import os
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from trainlight.collectors.deadline_http import Reply
from trainlight.collectors.problems import Problems
from trainlight.collectors.receiver_routes import Routes
from trainlight.collectors.schema import (
    StopRequest,
    list_segment_files,
    segment_file_name,
    write_atomically,
)
from trainlight.collectors.sinks import MemoryBacklog
from trainlight.collectors.wire import TOKEN_ENV

OUTBOX_ENV = "TRAINLIGHT_OUTBOX"
SEGMENT_CONTENT_TYPE = "application/vnd.apache.parquet"
_PERMANENT_REJECTIONS = {400, 413, 415, 422}
_MAX_BACKOFF_S = 30.0
_BUSY = {429, 503}  # answers that may carry a Retry-After back-pressure hint
# An ingest reply carries the run's stop state; a control poll this soon after one is skipped, so
# a run that posts on every flush costs one request per flush, not two.
CONTROL_FRESH_S = 0.5
MAX_RETRY_AFTER_S = 60.0  # a Retry-After beyond this is capped (a bad hint must not stall a run)
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


def default_outbox() -> Path:
    configured = os.environ.get(OUTBOX_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "trainlight" / "outbox"


class HttpSink:
    """Ships segments to a trainlight server, keeping them in a local outbox until acknowledged.

    `timeout_s` bounds each request in total (connect, send, wait, read), not each read.
    """

    def __init__(
        self,
        base_url: str,
        problems: Problems,
        *,
        outbox: Path | None = None,
        token: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.outbox = outbox or default_outbox()
        self._problems = problems
        self._timeout = timeout_s
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        # Proof of intent the server asks of every state-changing request (app/intent.py).
        headers = {"X-Trainlight": "1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._routes = Routes(self.base_url, headers, read_timeout_s=timeout_s)
        self._finish_by: float | None = None
        self._memory = MemoryBacklog(problems)
        self._stops: dict[str, StopRequest] = {}
        self._heard: dict[str, float] = {}  # run_id -> when a reply last told its stop state
        self._failures = 0
        self._next_try = 0.0
        self._owned: dict[str, int] = {}  # run_id -> fd holding that outbox folder's lock

    # -- Sink protocol -------------------------------------------------------------------------
    def send(self, run_id: str, seq: int, payload: bytes) -> None:
        try:
            self._own(run_id)
            write_atomically(self.outbox / run_id / segment_file_name(seq), payload)
        except OSError as exc:
            self._problems.report(
                "outbox_write", f"cannot write the outbox {self.outbox} ({exc}); keeping in memory"
            )
            self._memory.push(run_id, seq, payload)
        self.retry()

    def retry(self) -> None:
        if time.monotonic() < self._next_try or self._out_of_time():
            return
        self._memory.drain_into(self._post)
        if len(self._memory):
            return
        files = list_segment_files(self.outbox)
        mine = [f for f in files if f[0] in self._owned]
        if not self._deliver(mine):
            return
        for run_id in sorted({f[0] for f in files} - set(self._owned)):
            orphan = _claim(self.outbox / run_id)  # None while its writer is alive
            if orphan is None:
                continue
            try:
                if not self._deliver([f for f in files if f[0] == run_id]):
                    return
            finally:
                os.close(orphan)

    def finish_by(self, deadline: float | None) -> None:
        """No request runs past `deadline` (monotonic clock), the one in flight included."""
        self._finish_by = deadline
        self._routes.cut_off(deadline)

    def address_for(self, run_id: str) -> str:
        """Where the run's segments go now: the server's URL or the receiver it advertised."""
        return self._routes.address_for(run_id)

    def _out_of_time(self) -> bool:
        return self._finish_by is not None and time.monotonic() >= self._finish_by

    def pending(self) -> int:
        own = [f for f in list_segment_files(self.outbox) if f[0] in self._owned]
        return len(self._memory) + len(own)

    def _own(self, run_id: str) -> None:
        """Hold an exclusive lock on the run's outbox folder for this process's lifetime.

        Other processes sharing the outbox deliver a folder's files only once they can take its
        lock, i.e. once its writer has exited (the OS drops the lock even on kill -9): no two
        processes ever post the same files at once.
        """
        if run_id in self._owned:
            return
        directory = self.outbox / run_id
        directory.mkdir(parents=True, exist_ok=True)
        fd = _claim(directory)
        if fd is None:
            raise OSError(f"outbox folder {directory} is locked by another process")
        self._owned[run_id] = fd

    def _deliver(self, files: list[tuple[str, int, Path]]) -> bool:
        """Post files in order; False at the first that the server did not take."""
        for run_id, seq, path in files:
            if self._out_of_time():
                return False
            try:
                payload = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                self._problems.report("outbox_read", f"cannot read {path}: {exc}")
                continue
            if not self._post(run_id, seq, payload):
                return False
            path.unlink(missing_ok=True)
        return True

    def fate(self) -> str:
        return (
            f"they stay in {self.outbox} and the next trainlight process using that "
            "outbox delivers them"
        )

    def poll_stop(self, run_id: str) -> StopRequest | None:
        if run_id in self._stops:
            return self._stops[run_id]
        now = time.monotonic()
        if now < self._next_try or self._out_of_time():
            return None
        if now - self._heard.get(run_id, -CONTROL_FRESH_S) < CONTROL_FRESH_S:
            return None  # an ingest reply just told us
        try:
            reply = self._routes.request(
                run_id, "GET", f"/api/v1/runs/{quote(run_id)}/control", self._timeout
            )
        except _TRANSPORT_ERRORS as exc:
            self._failed(exc)
            return None
        if reply.status in _BUSY:
            self._refused(reply)
            return None
        if reply.status != 200:
            return None  # 404 until the server has ingested the run's first segment
        return self._remember_stop(run_id, reply)

    # -- delivery ------------------------------------------------------------------------------
    def _post(self, run_id: str, seq: int, payload: bytes) -> bool:
        """Deliver one segment; True once the server holds it (or refused it for good)."""
        query = urlencode({"run_id": run_id, "seq": str(seq)})
        try:
            reply = self._routes.request(
                run_id,
                "POST",
                f"/api/v1/ingest?{query}",
                self._timeout,
                body=payload,
                headers={"Content-Type": SEGMENT_CONTENT_TYPE},
            )
        except _TRANSPORT_ERRORS as exc:
            self._failed(exc)
            return False
        if reply.ok:
            self._failures = 0
            self._routes.learn(reply)
            self._remember_stop(run_id, reply)
            return True
        if reply.status in _PERMANENT_REJECTIONS:
            self._reject(run_id, seq, payload, reply)
            return True
        self._refused(reply)
        return False

    def _refused(self, reply: Reply) -> None:
        """A non-final refusal: honour a busy server's Retry-After, else back off as usual."""
        message = (
            f"the trainlight server at {self.base_url} answered HTTP {reply.status} "
            f"({reply.text[:200]})"
        )
        wait = reply.retry_after() if reply.status in _BUSY else None
        if wait is None:
            self._failed(message, kind="server_refused")
            return
        self._failures += 1
        self._next_try = time.monotonic() + min(wait, MAX_RETRY_AFTER_S)
        self._problems.report(
            "server_busy",
            f"{message} with Retry-After {wait:g} s; waiting that long (at most "
            f"{MAX_RETRY_AFTER_S:g} s) before retrying; segments are kept in {self.outbox}",
        )

    def _remember_stop(self, run_id: str, reply: Reply) -> StopRequest | None:
        try:
            stop = StopRequest.from_bytes(reply.content)
        except ValueError:
            return None
        self._heard[run_id] = time.monotonic()
        if stop is not None:
            self._stops[run_id] = stop
        return stop

    def _failed(self, why: Exception | str, kind: str = "server_unreachable") -> None:
        self._failures += 1
        delay = min(_MAX_BACKOFF_S, 0.5 * 2 ** min(self._failures, 6))
        self._next_try = time.monotonic() + delay
        message = (
            why
            if isinstance(why, str)
            else f"cannot reach the trainlight server at {self.base_url} ({why})"
        )
        self._problems.report(kind, f"{message}; segments are kept in {self.outbox} and retried")

    def _reject(self, run_id: str, seq: int, payload: bytes, reply: Reply) -> None:
        """Park a segment the server refused as malformed, so it neither blocks nor vanishes."""
        rejected = self.outbox / "rejected"
        try:
            rejected.mkdir(parents=True, exist_ok=True)
            write_atomically(rejected / f"{run_id}-{segment_file_name(seq)}", payload)
        except OSError:
            pass
        self._problems.report(
            "segment_rejected",
            f"the server refused segment {seq} of run {run_id} (HTTP {reply.status}: "
            f"{reply.text[:200]}); kept in {rejected}",
        )


def _claim(directory: Path) -> int | None:
    """An fd holding the folder's `.owner.lock` exclusively, or None if someone holds it."""
    fd = os.open(directory / ".owner.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
