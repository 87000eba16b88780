"""`trainlight serve`: the one process that opens the store, ingests, and serves pages and API.

One process, many threads (waitress): DuckDB allows a single process to hold a database file that
is being written, so the ingester thread, the API and the Dash callbacks share one connection.
With `--receivers N`, N more processes (app/receivers.py) take ingest and control requests into
the same inbox; they never open the database.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from trainlight.app.alerts.sender import AlertSender
from trainlight.app.arrivals import Arrivals
from trainlight.app.factory import create_app
from trainlight.app.intent import HostPolicy
from trainlight.app.listening import ServeOptions, check_bind, http_server, intake_settings
from trainlight.app.receivers import Receivers
from trainlight.app.store.database import Store, StoreOpenError
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.schema import StoreLayout

log = logging.getLogger("trainlight.serve")
__all__ = ["ServeOptions", "serve"]  # the CLI's way in


def serve(options: ServeOptions) -> None:
    check_bind(options)
    try:
        store = Store(StoreLayout.resolve(options.directory))
    except StoreOpenError as exc:
        raise SystemExit(f"trainlight: {exc}") from exc
    arrivals = Arrivals()
    try:
        with Receivers(options, store.layout, arrivals.write_fd) as receivers:
            _serve(options, store, receivers, arrivals)
    finally:
        store.close()


def _serve(options: ServeOptions, store: Store, receivers: Receivers, arrivals: Arrivals) -> None:
    stop = threading.Event()
    hosts = HostPolicy.serving(options.host, options.public_urls)
    intake = intake_settings(options, store.layout, receivers.ports, arrivals.notify)
    app = create_app(store, options.token, options.stale_after, hosts, intake)
    busy = intake.backlog.retry_after if intake.backlog is not None else None
    server = http_server(app.server, options, busy=busy)
    sender = _alert_sender(options, store, server.effective_port)
    ingester = Ingester(store, after_pass=sender.after_ingest if sender else None)
    threads = [
        threading.Thread(
            target=ingester.run,
            args=(stop, options.ingest_interval, arrivals),
            name="trainlight-ingest",
            daemon=True,
        )
    ]
    if sender is not None:
        threads.append(
            threading.Thread(target=sender.run, args=(stop,), name="trainlight-alerts", daemon=True)
        )
    for thread in threads:
        thread.start()
    receivers.start()

    def shutdown(_signum: int, _frame: FrameType | None) -> None:
        server.close()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    if receivers.ports:
        log.info("receivers take ingest and control on ports %s", list(receivers.ports))
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
        for thread in threads:
            thread.join(timeout=10)


def _alert_sender(options: ServeOptions, store: Store, port: int) -> AlertSender | None:
    """The sender of the alerts; links point at the first `--public-url`."""
    destinations = options.alert_destinations
    if not destinations:
        return None
    base = options.public_urls[0] if options.public_urls else f"http://{options.host}:{port}"
    log.info("alerts go to %s", ", ".join(d.label for d in destinations))
    return AlertSender(store, destinations, base, stale_after=options.stale_after)
