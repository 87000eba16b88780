"""One receiver process of `trainlight serve --receivers N` (started by app/receivers.py).

`python -m trainlight.app.receiver FD`: serves `POST /api/v1/ingest` and
`GET /api/v1/runs/<id>/control` on the inherited listening socket FD, with the main server's
Host, cross-site and token guards, caps, back-pressure and write path (app/intake.py). It reads
its settings as one JSON line on stdin and exits when stdin reaches its end: the main process
closed the pipe, or died. It never opens DuckDB: the stop state comes from the control files
that every stop (API, dashboard, auto-prune) publishes (app/store/control.py); a run with no
control file is not asked to stop, whether the store knows it yet or not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any

from flask import Blueprint, Flask, Response

from trainlight.app.access import install_token_guard
from trainlight.app.arrivals import pipe_notifier
from trainlight.app.backlog import BacklogLimits
from trainlight.app.intake import (
    MAX_REQUEST_BYTES,
    Intake,
    IntakeSettings,
    add_intake_routes,
    error,
)
from trainlight.app.intent import HostPolicy, install_intent_guard
from trainlight.app.listening import ServeOptions, http_server, intake_settings
from trainlight.app.store.control import published_stop
from trainlight.collectors.schema import StoreLayout

log = logging.getLogger("trainlight.receiver")


def receiver_app(
    layout: StoreLayout, token: str | None, hosts: HostPolicy, intake: IntakeSettings
) -> Flask:
    """Only ingest and control, behind the same guards, in the same order, as the main app."""
    app = Flask(__name__)
    install_intent_guard(app, hosts)
    install_token_guard(app, token)
    api = Blueprint("trainlight_receiver", __name__, url_prefix="/api/v1")
    add_intake_routes(api, Intake(layout, lambda run_id: published_stop(layout, run_id), intake))
    app.register_blueprint(api)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @app.errorhandler(404)
    def elsewhere(_error: Exception) -> Response:
        return error(404, "a receiver takes only ingest and control: ask the main server")

    return app


def options_from(settings: dict[str, Any]) -> ServeOptions:
    return ServeOptions(
        directory=settings["root"],
        host=settings["host"],
        token=settings["token"],
        public_urls=tuple(settings["public_urls"]),
        threads=settings["threads"],
        connection_limit=settings["connection_limit"],
        idle_timeout=settings["idle_timeout"],
        group_commit=settings["group_commit"],
        backlog=BacklogLimits(settings["max_backlog_segments"], settings["max_backlog_bytes"]),
    )


def exit_with_parent() -> None:
    """Read stdin to its end (the main process closed it or died), then end this process."""
    while sys.stdin.buffer.read(4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    listener = socket.socket(fileno=int(argv[0]))
    settings = json.loads(sys.stdin.buffer.readline())
    options = options_from(settings)
    layout = StoreLayout.resolve(options.directory)
    wake_fd = settings.get("wake_fd")
    notify = pipe_notifier(wake_fd) if isinstance(wake_fd, int) else None
    intake = intake_settings(options, layout, tuple(settings["receiver_ports"]), notify)
    hosts = HostPolicy.serving(options.host, options.public_urls)
    app = receiver_app(layout, options.token, hosts, intake)
    busy = intake.backlog.retry_after if intake.backlog is not None else None
    server = http_server(app, options, listener, busy)

    def shutdown(_signum: int, _frame: FrameType | None) -> None:
        server.close()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    threading.Thread(target=exit_with_parent, name="trainlight-parent", daemon=True).start()
    log.info("receiver %d taking ingest on port %d", os.getpid(), listener.getsockname()[1])
    with contextlib.suppress(KeyboardInterrupt):  # SIGTERM, or Ctrl-C to the process group
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
