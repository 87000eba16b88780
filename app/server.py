"""`trainlight serve`: the one process that opens the store, ingests, and serves pages and API.

One process, many threads (waitress): DuckDB allows a single process to hold a database file that
is being written, so the ingester thread, the API and the Dash callbacks share one connection.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any

from flask import Flask
from waitress.server import create_server

from trainlight.app.connections import (
    CHANNEL_TIMEOUT_S,
    CLEANUP_INTERVAL_S,
    connection_limits,
    guarded_channel,
    install_channel,
)
from trainlight.app.factory import MAX_REQUEST_BYTES, create_app
from trainlight.app.intent import HostPolicy
from trainlight.app.store.database import Store, StoreOpenError
from trainlight.app.store.inbox import Ingester
from trainlight.app.store.queries import DEFAULT_STALE_AFTER
from trainlight.collectors.schema import StoreLayout

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
    ingest_interval: float = 0.5
    stale_after: timedelta = DEFAULT_STALE_AFTER


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


def http_server(app: Flask, options: ServeOptions) -> Any:
    """Waitress on a poll() loop, limited to what it can hold and read (app/connections.py)."""
    limits = connection_limits(options.connection_limit)
    server = create_server(
        app,
        host=options.host,
        port=options.port,
        threads=options.threads,
        connection_limit=limits.connection_limit,
        asyncore_use_poll=True,  # select() fails on descriptors >= 1024
        channel_timeout=options.idle_timeout,
        cleanup_interval=max(1, min(CLEANUP_INTERVAL_S, options.idle_timeout // 2)),
        max_request_body_size=MAX_REQUEST_BYTES + 1,  # waitress refuses >= this
    )
    if options.token:
        install_channel(server, guarded_channel(options.token))
    log.info(
        "up to %d connections (open-file limit %d)", limits.connection_limit, limits.open_files
    )
    return server


def serve(options: ServeOptions) -> None:
    check_bind(options)
    try:
        store = Store(StoreLayout.resolve(options.directory))
    except StoreOpenError as exc:
        raise SystemExit(f"trainlight: {exc}") from exc
    stop = threading.Event()
    ingester = Ingester(store)
    thread = threading.Thread(
        target=ingester.run,
        args=(stop, options.ingest_interval),
        name="trainlight-ingest",
        daemon=True,
    )
    thread.start()
    hosts = HostPolicy.serving(options.host, options.public_urls)
    app = create_app(store, options.token, options.stale_after, hosts)
    server = http_server(app.server, options)

    def shutdown(_signum: int, _frame: FrameType | None) -> None:
        server.close()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    print(
        f"trainlight serving http://{options.host}:{server.effective_port}/ "
        f"(store {store.layout.root})",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        thread.join(timeout=10)
        store.close()
