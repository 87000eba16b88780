"""What `trainlight serve` listens with: its options, the bind rule, and the waitress server.

Shared by the main process (app/server.py) and its receivers (app/receiver.py), which must not
import the dashboard to listen exactly like it.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask
from waitress.server import create_server

from trainlight.app.alerts.destinations import Destination
from trainlight.app.backlog import DEFAULT_BACKLOG_LIMITS, BacklogGauge, BacklogLimits
from trainlight.app.connections import (
    CHANNEL_TIMEOUT_S,
    CLEANUP_INTERVAL_S,
    DEFAULT_DEADLINES,
    RequestDeadlines,
    RetryAfter,
    connection_limits,
    guarded_channel,
    install_channel,
)
from trainlight.app.intake import MAX_REQUEST_BYTES, IntakeSettings
from trainlight.app.store.ingest.group_commit import GroupCommit
from trainlight.app.store.read.queries import DEFAULT_STALE_AFTER
from trainlight.collectors.schema import StoreLayout, write_atomically

log = logging.getLogger("trainlight.serve")


@dataclass(frozen=True)
class ServeOptions:
    directory: str | None = None
    host: str = "127.0.0.1"
    port: int = 8050
    token: str | None = None
    public_urls: tuple[str, ...] = ()
    threads: int = 8
    # Every HTTP collector keeps one keep-alive connection open; waitress's default limit of 100
    # would stop accepting (and make collectors back off) beyond ~90 remote runs. Clamped at start
    # to what the descriptor limit allows (app/connections.py).
    connection_limit: int = 8192
    idle_timeout: int = CHANNEL_TIMEOUT_S
    deadlines: RequestDeadlines = DEFAULT_DEADLINES  # slow-trickled requests are cut off
    ingest_interval: float = 0.5
    stale_after: timedelta = DEFAULT_STALE_AFTER
    # Extra processes taking ingest and control requests on ports of their own (app/receivers.py).
    receivers: int = 0
    # Segments arriving together share their flushes (store/ingest/group_commit.py); off: per-file.
    group_commit: bool = False
    backlog: BacklogLimits = DEFAULT_BACKLOG_LIMITS
    # Where alerts go (`--alert-webhook`s, then the `--alerts` file's entries); their URLs and
    # passwords are secrets (never in a repr).
    alert_destinations: tuple[Destination, ...] = ()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(options: ServeOptions) -> None:
    """Refuse to expose the store beyond this machine without a token (DESIGN.md §6)."""
    if not is_loopback(options.host) and not options.token:
        raise SystemExit(
            f"refusing to listen on {options.host} without a token: anyone who can reach it could "
            "stop runs and write data. Pass --token or set TRAINLIGHT_TOKEN."
        )


def http_server(
    app: Flask,
    options: ServeOptions,
    listener: socket.socket | None = None,
    busy: RetryAfter | None = None,
) -> Any:
    """Waitress on a poll() loop, limited to what it can hold and read (app/connections.py);
    on `listener` when given (a receiver's inherited socket), else on options.host:port; ingest
    refused before its body while `busy()` gives a wait."""
    limits = connection_limits(options.connection_limit)
    where: dict[str, Any] = (
        {"sockets": [listener]}
        if listener is not None
        else {"host": options.host, "port": options.port}
    )
    server = create_server(
        app,
        **where,
        threads=options.threads,
        connection_limit=limits.connection_limit,
        asyncore_use_poll=True,  # select() fails on descriptors >= 1024
        channel_timeout=options.idle_timeout,
        cleanup_interval=max(1, min(CLEANUP_INTERVAL_S, options.idle_timeout // 2)),
        max_request_body_size=MAX_REQUEST_BYTES + 1,  # waitress refuses >= this
    )
    install_channel(server, guarded_channel(options.token, busy, options.deadlines))
    log.info(
        "up to %d connections (open-file limit %d)", limits.connection_limit, limits.open_files
    )
    return server


def intake_settings(
    options: ServeOptions,
    layout: StoreLayout,
    receiver_ports: tuple[int, ...] = (),
    notify: Callable[[], None] | None = None,
) -> IntakeSettings:
    """How this process writes segments and pushes back; its backlog gauge (none without
    bounds) is started here."""
    layout.inbox.mkdir(parents=True, exist_ok=True)
    gauge = None
    if options.backlog.max_segments or options.backlog.max_bytes:
        gauge = BacklogGauge(layout.inbox, options.backlog)
        gauge.start()
    write = GroupCommit(layout.inbox).write if options.group_commit else write_atomically
    return IntakeSettings(write=write, backlog=gauge, receiver_ports=receiver_ports, notify=notify)
