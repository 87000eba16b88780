"""A receiver process of `trainlight serve --receivers N`: ingest requests off the main process.

The main process holds the single DuckDB writer, the dashboard and the API; under 200 runs its
request threads, decoding footers and writing files, held the GIL against the ingester. A
receiver is a separate process (its own GIL) listening on the same port with `SO_REUSEPORT`,
so the kernel spreads connections over the main process and the receivers. It answers
`POST /api/v1/ingest` (same intent, token, size and footer checks, back-pressure and durable
write into the same inbox, before its 202) and `GET /api/v1/runs/<id>/control` (from the stop
file the main process publishes); any other request that lands here (a browser's) is relayed
as is to the main process on its private loopback port, which answers it with its own guards.

A receiver never opens the store's database, so it needs no lock; it exits when its parent does
(`PR_SET_PDEATHSIG` on Linux, and a watchdog on the parent's pid everywhere).
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import threading
from collections.abc import Callable

from flask import Flask, Response, request
from waitress.server import create_server

from trainlight.app.access import install_token_guard
from trainlight.app.api import MAX_SEGMENT_BYTES, json_response, receive_segment
from trainlight.app.backlog import BacklogGauge, BacklogLimits
from trainlight.app.connections import connection_limits, guarded_channel, install_channel
from trainlight.app.intent import HostPolicy, install_intent_guard
from trainlight.collectors.schema import StopRequest, StoreLayout, is_valid_run_id, write_atomically

TOKEN_ENV = "TRAINLIGHT_RECEIVER_TOKEN"  # never on the command line (visible in `ps`)
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}
)
OWN_ROUTES = ("/api/v1/ingest", "/api/v1/runs/")


def is_own(path: str, method: str) -> bool:
    if method == "POST" and path.rstrip("/") == "/api/v1/ingest":
        return True
    return method == "GET" and path.startswith(OWN_ROUTES[1]) and path.endswith("/control")


def relay(backend: tuple[str, int]) -> Response:
    """Forward the current request to the main process and return its answer unchanged."""
    conn = http.client.HTTPConnection(*backend, timeout=120)
    try:
        headers = {k: v for k, v in request.headers if k.lower() not in _HOP_BY_HOP}
        conn.request(request.method, request.full_path, request.get_data(), headers)
        answer = conn.getresponse()
        kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
        return Response(answer.read(), status=answer.status, headers=kept)
    finally:
        conn.close()


def receiver_app(
    layout: StoreLayout, token: str | None, hosts: HostPolicy, backend: tuple[str, int]
) -> Flask:
    app = Flask(__name__)

    @app.before_request  # first: whatever is not ours goes to the main process untouched
    def not_ours() -> Response | None:
        return None if is_own(request.path, request.method) else relay(backend)

    install_intent_guard(app, hosts)
    install_token_guard(app, token)
    app.config["MAX_CONTENT_LENGTH"] = MAX_SEGMENT_BYTES + 1024 * 1024

    @app.post("/api/v1/ingest")
    def ingest() -> Response:
        return receive_segment(layout, write_atomically, MAX_SEGMENT_BYTES, stop_file(layout))

    @app.get("/api/v1/runs/<run_id>/control")
    def control(run_id: str) -> Response:
        if not is_valid_run_id(run_id):
            return json_response({"error": "invalid run id"}, 400)
        stop, reason = stop_file(layout)(run_id)
        return json_response({"run_id": run_id, "stop": stop, "reason": reason})

    return app


def stop_file(layout: StoreLayout) -> Callable[[str], tuple[bool, str]]:
    """A run's stop request as the main process published it in `control/<run_id>.json`."""

    def read(run_id: str) -> tuple[bool, str]:
        try:
            stop = StopRequest.from_bytes(layout.control_path(run_id).read_bytes())
        except (OSError, ValueError):
            return False, ""
        return (True, stop.reason) if stop is not None else (False, "")

    return read


def die_with_parent(parent: int) -> None:
    """Exit when the process that started us is gone."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        os._exit(0)

    if os.getppid() != parent:
        os._exit(0)
    threading.Thread(target=watch, name="trainlight-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trainlight.app.receiver")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-port", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--public-url", action="append", default=[])
    parser.add_argument("--max-backlog", type=int, default=BacklogLimits.max_segments)
    parser.add_argument("--max-lag", type=float, default=BacklogLimits.max_lag_s)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    token = os.environ.pop(TOKEN_ENV, None) or None
    layout = StoreLayout.resolve(args.dir)
    hosts = HostPolicy.serving(args.host, tuple(args.public_url))
    app = receiver_app(layout, token, hosts, ("127.0.0.1", args.backend_port))
    gauge = BacklogGauge(layout.inbox, BacklogLimits(args.max_backlog, args.max_lag))
    gauge.start()
    from trainlight.app.server import reuse_port_socket  # the server module imports this one

    limits = connection_limits(8192)
    server = create_server(
        app,
        sockets=[reuse_port_socket(args.host, args.port)],
        threads=args.threads,
        connection_limit=limits.connection_limit,
        asyncore_use_poll=True,
        max_request_body_size=MAX_SEGMENT_BYTES + 1024 * 1024,
    )
    install_channel(server, guarded_channel(token, gauge.retry_after))
    print(f"trainlight receiver {os.getpid()} on port {args.port}", file=sys.stderr, flush=True)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
