"""HTTP requests with a total deadline, whatever the server does.

A socket timeout bounds each read, not a request: a server that trickles one byte every 2 s (or a
proxy that keeps a connection half alive) never trips a 5 s read timeout, and `Monitor.close()`
waited on it forever. Here every request has an absolute deadline on the monotonic clock: a
watchdog timer shuts the socket down when it passes, which ends a blocked `recv` or `send` at
once (no abandoned thread left reading). The deadline can be moved earlier while a request is in
flight (`cut_off`), which is how `close()` frees the flush thread within its own timeout.

Plain `http.client` over one kept-alive connection: the collector posts one small segment at a
time, so a connection pool buys nothing; a reused connection the server closed while idle is
replaced once, transparently.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import selectors
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class DeadlineExceeded(TimeoutError):
    """The request did not complete before its deadline (the connection was cut)."""


@dataclass(frozen=True)
class Reply:
    status: int
    content: bytes
    headers: Message = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def retry_after(self, now: float | None = None) -> float | None:
        """Seconds the server asked us to wait (`Retry-After`: seconds or an HTTP date)."""
        raw = (self.headers.get("Retry-After") or "").strip()
        if not raw:
            return None
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return max(0.0, when - (time.time() if now is None else now))


class DeadlineClient:
    """Requests to one server, each finished or cut off by an absolute monotonic deadline."""

    def __init__(self, base_url: str, headers: Mapping[str, str], read_timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers)
        self._read_timeout = read_timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # guards the in-flight socket, its deadline and timer
        self._cut_off: float | None = None  # no request may run past this (close's deadline)
        self._live: tuple[socket.socket | None, float, threading.Timer] | None = None
        self._aborted = False

    def cut_off(self, deadline: float | None) -> None:
        """From now on no request runs past `deadline` (None: no limit), the current one too."""
        with self._lock:
            self._cut_off = deadline
            if self._live is not None and deadline is not None and deadline < self._live[1]:
                sock, _, timer = self._live
                timer.cancel()
                self._arm_locked(sock, deadline)

    def request(
        self,
        method: str,
        path: str,
        deadline: float,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One request; raises OSError or http.client.HTTPException (DeadlineExceeded on time)."""
        all_headers = {**self._headers, **(headers or {})}
        reused = self._conn is not None
        try:
            return self._attempt(method, self._prefix + path, deadline, body, all_headers)
        except _STALE:
            if not reused or self._aborted:
                raise
        return self._attempt(method, self._prefix + path, deadline, body, all_headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- internals -----------------------------------------------------------------------------
    def _attempt(
        self, method: str, path: str, deadline: float, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        with self._lock:
            if self._cut_off is not None:
                deadline = min(deadline, self._cut_off)
            self._aborted = False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("no time left for the request")
        with self._lock:  # armed before connecting: the connect and TLS handshake count too
            self._arm_locked(self._conn.sock if self._conn else None, deadline)
        try:
            conn = self._connection(min(self._read_timeout, remaining))
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if self._unwatch():
                raise DeadlineExceeded(f"no complete answer within the deadline ({exc})") from exc
            raise
        if self._unwatch():  # the watchdog fired as the answer completed: the socket is dead
            self.close()
        if response.will_close:
            self.close()
        return Reply(response.status, content, response.msg)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=timeout)
            self._conn._create_connection = self._open  # type: ignore[attr-defined]
        elif self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        return self._conn

    def _open(
        self, address: tuple[str, int], timeout: float, source_address: object = None
    ) -> socket.socket:
        """`socket.create_connection`, but the watchdog can cut the connect short too."""
        last: OSError = OSError(f"cannot resolve {address[0]}")
        for family, kind, proto, _, sockaddr in socket.getaddrinfo(
            address[0], address[1], type=socket.SOCK_STREAM
        ):
            sock = socket.socket(family, kind, proto)
            with self._lock:
                if self._live is not None:
                    self._live = (sock, *self._live[1:])
            try:
                self._connect(sock, sockaddr, timeout)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise last

    def _connect(self, sock: socket.socket, sockaddr: Any, timeout: float) -> None:
        """A non-blocking connect polled in short slices, so an abort is seen within 50 ms."""
        sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        give_up = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE)
            while err in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
                left = give_up - time.monotonic()
                if self._aborted or left <= 0:
                    raise TimeoutError(f"could not connect within {timeout:.3g} s")
                if selector.select(min(0.05, left)):
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        sock.settimeout(timeout)

    def _arm_locked(self, sock: socket.socket | None, deadline: float) -> None:
        delay = max(0.0, deadline - time.monotonic())
        timer = threading.Timer(delay, lambda: self._abort(timer))
        timer.daemon = True
        self._live = (sock, deadline, timer)
        timer.start()

    def _unwatch(self) -> bool:
        """Disarm the watchdog; True if it had already fired."""
        with self._lock:
            if self._live is not None:
                self._live[2].cancel()
            self._live = None
            return self._aborted

    def _abort(self, timer: threading.Timer) -> None:
        with self._lock:
            if self._live is None or self._live[2] is not timer:
                return  # that request finished, or its deadline moved, in the meantime
            sock = self._live[0]
            self._aborted = True
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to end
                sock.shutdown(socket.SHUT_RDWR)  # ends a blocked recv/send at once
