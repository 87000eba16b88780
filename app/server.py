"""`trainlight serve`: the one process that opens the store, ingests, and serves pages and API.

One process, many threads (waitress): DuckDB allows a single process to hold a database file that
is being written, so the ingester thread, the API and the Dash callbacks share one connection.
With `--receivers N`, N more processes share the port and take ingest off this one
(app/receiver.py); they never open the database. Ingest is refused with 503 + Retry-After while
the inbox is too far behind (app/backlog.py).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from flask import Flask
from waitress.server import create_server

from trainlight.app.backlog import BacklogGauge, BacklogLimits
from trainlight.app.connections import (
    CHANNEL_TIMEOUT_S,
    CLEANUP_INTERVAL_S,
    connection_limits,
    guarded_channel,
    install_channel,
)
from trainlight.app.factory import MAX_REQUEST_BYTES, create_app
from trainlight.app.intent import HostPolicy
from trainlight.app.receiver import TOKEN_ENV as RECEIVER_TOKEN_ENV
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
    backlog: BacklogLimits = field(default_factory=BacklogLimits)
    receivers: int = 0  # extra processes accepting ingest on the same port (app/receiver.py)
    group_commit: bool = False  # app/store/group_commit.py; off: it lost to plain fsyncs here


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


def reuse_port_socket(host: str, port: int, first: bool = False) -> socket.socket:
    """A bound TCP socket that other processes may bind too (`SO_REUSEPORT`): the kernel then
    spreads new connections over all of them. `first`: fail if anything listens on the port
    already (another server started with receivers would otherwise share it silently)."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    if first:  # a plain bind fails on a port that anyone (SO_REUSEPORT or not) holds
        with socket.socket(info[0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(info[4])
            port = probe.getsockname()[1]
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(info[4])
    return sock


def http_server(
    app: Flask, options: ServeOptions, gauge: BacklogGauge | None = None, sockets: Any = None
) -> Any:
    """Waitress on a poll() loop, limited to what it can hold and read (app/connections.py),
    refusing ingest while `gauge` says the inbox is too far behind (app/backlog.py); on
    `sockets` if given, else on host:port."""
    limits = connection_limits(options.connection_limit)
    where = {"sockets": sockets} if sockets else {"host": options.host, "port": options.port}
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
    busy = gauge.retry_after if gauge is not None else None
    if options.token or busy is not None:
        install_channel(server, guarded_channel(options.token, busy))
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
    app = create_app(store, options.token, options.stale_after, hosts, options.group_commit)
    gauge = BacklogGauge(store.layout.inbox, options.backlog)
    gauge.start()
    server, port, receivers = listen(app.server, options, gauge, store.layout.root)

    def shutdown(_signum: int, _frame: FrameType | None) -> None:
        server.close()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    print(
        f"trainlight serving http://{options.host}:{port}/ (store {store.layout.root})",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        gauge.stop()
        stop_receivers(receivers)
        thread.join(timeout=10)
        store.close()


def listen(
    app: Flask, options: ServeOptions, gauge: BacklogGauge, root: Path
) -> tuple[Any, int, list[subprocess.Popen[bytes]]]:
    """The HTTP server, its port and its receivers: with receivers, the public port is shared
    (`SO_REUSEPORT`) and a private loopback one takes what they relay."""
    if not options.receivers:
        server = http_server(app, options, gauge)
        return server, server.effective_port, []
    public = reuse_port_socket(options.host, options.port, first=True)
    private = socket.create_server(("127.0.0.1", 0))
    server = http_server(app, options, gauge, [public, private])
    port = public.getsockname()[1]
    return server, port, start_receivers(options, root, port, private.getsockname()[1])


def start_receivers(
    options: ServeOptions, root: Path, port: int, backend_port: int
) -> list[subprocess.Popen[bytes]]:
    """`options.receivers` receiver processes on `port` (app/receiver.py), token in their env."""
    command = [sys.executable, "-m", "trainlight.app.receiver", "--dir", str(root)]
    command += ["--host", options.host, "--port", str(port), "--backend-port", str(backend_port)]
    command += ["--parent", str(os.getpid()), "--threads", str(options.threads)]
    command += ["--max-backlog", str(options.backlog.max_segments)]
    command += ["--max-lag", str(options.backlog.max_lag_s)]
    for url in options.public_urls:
        command += ["--public-url", url]
    env = {**os.environ, RECEIVER_TOKEN_ENV: options.token or ""}
    env.pop("TRAINLIGHT_TOKEN", None)
    started = [
        subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        for _ in range(options.receivers)
    ]
    log.info("%d receivers: pids %s", len(started), [p.pid for p in started])
    return started


def stop_receivers(receivers: list[subprocess.Popen[bytes]]) -> None:
    for process in receivers:
        process.terminate()
    for process in receivers:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
