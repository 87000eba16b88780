"""How many connections `trainlight serve` holds, how long idle ones stay, and what it reads first.

Waitress's default loop is `select()`, which raises `ValueError` for a file descriptor >= 1024 and
takes the whole server down at about a thousand open sockets; we run its `poll()` loop instead,
which has no such ceiling. A connection limit is only real if the process may open that many
descriptors, so at start the soft `RLIMIT_NOFILE` is raised towards the hard limit and the limit
is clamped below it, keeping a reserve for the store, the inbox, logs and pipes. Connections with
no request in flight are closed after `CHANNEL_TIMEOUT_S` (collectors and dashboards reconnect
transparently), so idle sockets cannot pile up forever.

Nothing is spooled before it could be accepted: waitress's body limit is the ingest limit (not its
1 GiB default), and with a token set, a request that carries a body is refused with 401 as soon
as its headers are parsed, before any of the body is read, unless its `Authorization` header or
cookie passes the same check as `app/access.py`. Likewise, while the inbox backlog is past its
bound (app/backlog.py), `POST /api/v1/ingest` is refused with 503 and `Retry-After` before its
body is read. Body-less requests still reach the Flask guards.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.utilities import Error
from werkzeug.http import parse_cookie

from trainlight.app.access import COOKIE, is_authorised
from trainlight.app.backlog import busy_message

# Descriptors kept for everything that is not a client socket (DuckDB, inbox files, log, pipes).
FD_RESERVE = 256
# Idle keep-alive connections are closed after this long: well above the collectors' flush
# interval and the dashboard's refresh, so busy clients keep their connection, and short enough
# that thousands of abandoned sockets are gone within about a minute.
CHANNEL_TIMEOUT_S = 60
CLEANUP_INTERVAL_S = 10
REFUSAL = "missing or wrong token: send 'Authorization: Bearer <token>'"
INGEST_PATH = "/api/v1/ingest"
RetryAfter = Callable[[], "int | None"]  # seconds to tell a collector to wait, None: not busy


@dataclass(frozen=True)
class ConnectionLimits:
    """What the server can actually hold: the descriptor limit it runs under and its share."""

    open_files: int
    connection_limit: int


def raise_open_files(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE to `wanted` (at most the hard limit); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else wanted


def connection_limits(requested: int) -> ConnectionLimits:
    """Raise the descriptor limit for `requested` connections and clamp them to what it allows."""
    open_files = raise_open_files(requested + FD_RESERVE)
    return ConnectionLimits(open_files, max(1, min(requested, open_files - FD_RESERVE)))


class JsonError(Error):
    """Waitress's error response for a request refused before the app sees it, in the API's
    shape: `{"error": "..."}`."""

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        body = json.dumps({"error": self.body}).encode()
        return f"{self.code} {self.reason}", [("Content-Type", "application/json")], body


class Unauthorised(JsonError):
    """A request refused before its body is read: no valid token."""

    code = 401
    reason = "Unauthorized"


class RequestTimeout(JsonError):
    """A request whose headers (or body) arrive too slowly: a trickle of one byte every few
    seconds never looks idle, so it would hold its connection, and a worker's buffer, forever."""

    code = 408
    reason = "Request Timeout"


class Busy(JsonError):
    """Waitress's 503 for an ingest refused before its body is read: the inbox is too full."""

    code = 503
    reason = "Service Unavailable"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(busy_message(retry_after_s))
        self.retry_after_s = retry_after_s

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        status, headers, body = super().to_response(ident)
        return status, [*headers, ("Retry-After", str(self.retry_after_s))], body


@dataclass(frozen=True)
class RequestDeadlines:
    """How long a request may take to arrive: its headers, and all of it (a 64 MiB segment at
    ~250 KiB/s). Only bytes that keep coming are judged; a silent connection is closed by the
    idle timeout."""

    headers_s: float = 30.0
    whole_s: float = 300.0

    def late(self, headers_done: bool, elapsed_s: float) -> str | None:
        if not headers_done and elapsed_s > self.headers_s:
            return f"request headers took longer than {self.headers_s:g} s to arrive"
        if elapsed_s > self.whole_s:
            return f"request took longer than {self.whole_s:g} s to arrive"
        return None


DEFAULT_DEADLINES = RequestDeadlines()


def has_body(parser: HTTPRequestParser) -> bool:
    return bool(parser.content_length > 0 or parser.chunked)


def header_authorised(token: str, headers: dict[str, str]) -> bool:
    """`is_authorised` on waitress's parsed headers (upper-case, `_` for `-`)."""
    cookie = parse_cookie(headers.get("COOKIE", "")).get(COOKIE)
    return is_authorised(token, headers.get("AUTHORIZATION", ""), cookie)


def guarded_channel(
    token: str | None,
    busy: RetryAfter | None = None,
    deadlines: RequestDeadlines = DEFAULT_DEADLINES,
) -> type[HTTPChannel]:
    """A channel whose parser refuses a body once the headers are in: an unauthenticated one
    (with a token), or an ingest while `busy()` says how long to wait; and a request whose
    headers or body arrive slower than `deadlines` allow."""

    def refusal(parser: HTTPRequestParser) -> Error | None:
        if token and not header_authorised(token, parser.headers):
            return Unauthorised(REFUSAL)
        if busy is not None and parser.command == "POST" and parser.path == INGEST_PATH:
            wait = busy()
            if wait is not None:
                return Busy(wait)
        return None

    class GuardedParser(HTTPRequestParser):
        def __init__(self, adj: Any) -> None:
            super().__init__(adj)
            self.started = time.monotonic()  # the request's first bytes arrived

        def received(self, data: bytes) -> int:
            late = deadlines.late(self.headers_finished, time.monotonic() - self.started)
            if late is not None:
                return self._refuse(RequestTimeout(late), data)
            was_in_headers = not self.headers_finished
            consumed: int = super().received(data)
            if not (was_in_headers and self.headers_finished and has_body(self)):
                return consumed
            refused = refusal(self)
            return consumed if refused is None else self._refuse(refused, data)

        def _refuse(self, error: Error, data: bytes) -> int:
            # Refuse now: drop whatever body bytes came along, never send `100 Continue`, and
            # let waitress answer the error and close the connection once it is flushed.
            self.error = error
            self.completed = True
            self.expect_continue = False
            self.close()
            self.body_rcv = None
            return len(data)

    class GuardedChannel(HTTPChannel):
        parser_class = GuardedParser

    return GuardedChannel


def install_channel(server: Any, channel: type[HTTPChannel]) -> None:
    """Make every listening socket of `server` (one, or a MultiSocketServer's) use `channel`."""
    listeners = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = channel
