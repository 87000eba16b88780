"""`trainlight serve --receivers N`: processes that take ingest and control off the main one.

The main process holds the only DuckDB connection, the dashboard and the rest of the API; every
segment it acknowledges costs its request threads (under one GIL) the footer check and the write.
Receivers take that part: each is a separate process (app/receiver.py) serving only
`POST /api/v1/ingest` and `GET /api/v1/runs/<id>/control`, with the same Host, cross-site and token
checks, caps and answers, writing into the same inbox, which the main process's ingester drains.

Ports: the main process binds every receiver's socket itself (port+1 .. port+N; ephemeral ones
when the main port is 0), before it starts anything, so a port in use fails the start at once, and
keeps them: a receiver that dies is started again on the same socket, and connections that arrive
meanwhile wait in its queue instead of being refused. Collectors learn the ports from the main
server's 202 answers (app/intake.py) and fall back to the main port when a receiver cannot be
reached (collectors/http_sink.py): one URL is all a collector is ever given.

No orphans: each receiver reads its settings from a pipe on its stdin and then waits for that
pipe's end; when the main process exits, however it exits (SIGKILL included), the kernel closes
its end and the receiver stops. A normal stop closes the pipes, then waits, then kills.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from trainlight.collectors.schema import StoreLayout

if TYPE_CHECKING:
    from trainlight.app.listening import ServeOptions

log = logging.getLogger("trainlight.receivers")
WATCH_INTERVAL_S = 0.5
RESTART_AFTER_S = 1.0  # a receiver that keeps dying is restarted at most this often
STOP_WAIT_S = 5.0
LISTEN_BACKLOG = 1024
BIND_PATIENCE_S = 5.0


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: any free port); SystemExit when it stays taken.

    A port in use is tried again for `BIND_PATIENCE_S`: the receivers of a server that was just
    killed may still be on their way out (they leave once they see their pipe end)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    give_up = time.monotonic() + BIND_PATIENCE_S
    while True:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= give_up:
                raise SystemExit(
                    f"trainlight: cannot listen on {host}:{port} (receiver): {exc}"
                ) from exc
        time.sleep(0.1)


def receiver_settings(
    options: ServeOptions, root: Path, ports: tuple[int, ...]
) -> dict[str, object]:
    """What a receiver needs to listen like the main server (sent on its stdin, not argv: the
    token must not show in `ps`)."""
    return {
        "root": str(root),
        "host": options.host,
        "token": options.token,
        "public_urls": list(options.public_urls),
        "threads": options.threads,
        "connection_limit": options.connection_limit,
        "idle_timeout": options.idle_timeout,
        "group_commit": options.group_commit,
        "max_backlog_segments": options.backlog.max_segments,
        "max_backlog_bytes": options.backlog.max_bytes,
        "receiver_ports": list(ports),
    }


@dataclass
class _Slot:
    listener: socket.socket
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0


class Receivers:
    """The receivers of one `trainlight serve`: bound at once, started, watched, stopped."""

    def __init__(
        self, options: ServeOptions, layout: StoreLayout, wake_fd: int | None = None
    ) -> None:
        self._options = options
        self._layout = layout
        self._wake_fd = wake_fd  # each receiver writes a byte here per acknowledged segment
        self._slots: list[_Slot] = []
        try:
            for index in range(options.receivers):
                port = options.port + 1 + index if options.port else 0
                self._slots.append(_Slot(bind_listener(options.host, port)))
        except BaseException:
            self._close_listeners()
            raise
        self.ports = tuple(slot.listener.getsockname()[1] for slot in self._slots)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> Receivers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if not self._slots:
            return
        with self._lock:
            for slot in self._slots:
                self._spawn(slot)
        self._watcher = threading.Thread(
            target=self._watch, name="trainlight-receivers", daemon=True
        )
        self._watcher.start()

    def stop(self) -> None:
        """Close every receiver's pipe (it exits), wait for them, kill what lingers."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=STOP_WAIT_S)
        with self._lock:
            processes = [slot.process for slot in self._slots if slot.process is not None]
            for process in processes:
                _close(process.stdin)
            deadline = time.monotonic() + STOP_WAIT_S
            for process in processes:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_WAIT_S)
            self._close_listeners()

    def pids(self) -> list[int]:
        with self._lock:
            return [slot.process.pid for slot in self._slots if slot.process is not None]

    def _spawn(self, slot: _Slot) -> None:
        fd = slot.listener.fileno()
        process = subprocess.Popen(
            [sys.executable, "-m", "trainlight.app.receiver", str(fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # main's stdout is its own (`serving` line); logs: stderr
            pass_fds=(fd,) if self._wake_fd is None else (fd, self._wake_fd),
        )
        settings = receiver_settings(self._options, self._layout.root, self.ports)
        settings["wake_fd"] = self._wake_fd
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps(settings).encode() + b"\n")
            process.stdin.flush()
        except OSError:
            log.warning("receiver %d exited before it read its settings", process.pid)
        slot.process, slot.started_at = process, time.monotonic()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL_S):
            with self._lock:
                for slot in self._slots:
                    self._restart_if_dead(slot)

    def _restart_if_dead(self, slot: _Slot) -> None:
        process = slot.process
        if process is None or process.poll() is None or self._stopping.is_set():
            return
        if time.monotonic() - slot.started_at < RESTART_AFTER_S:
            return
        log.warning(
            "receiver %d on port %d exited with %s; starting another",
            process.pid,
            slot.listener.getsockname()[1],
            process.returncode,
        )
        _close(process.stdin)
        self._spawn(slot)

    def _close_listeners(self) -> None:
        for slot in self._slots:
            slot.listener.close()


def _close(pipe: IO[bytes] | None) -> None:
    if pipe is None:
        return
    with contextlib.suppress(OSError):  # the receiver is gone already: nothing to tell it
        pipe.close()
