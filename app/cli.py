"""The `trainlight` command: serve, ingest, runs, demo, landscape, import.

Commands parse arguments and call into the store and server modules; they hold no logic of their
own. Importing this module imports neither torch nor dash, so `trainlight runs` starts quickly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from trainlight.app.backlog import BacklogLimits
from trainlight.collectors.schema import DEFAULT_STORE_DIR, STORE_DIR_ENV, StoreLayout
from trainlight.collectors.wire import TOKEN_ENV

if TYPE_CHECKING:
    from trainlight.app.alerts.destinations import Destination
    from trainlight.app.store.database import Store
    from trainlight.app.store.read.landscape import SliceSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainlight", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    store_help = f"store directory (default: ${STORE_DIR_ENV} or {DEFAULT_STORE_DIR})"

    serve = sub.add_parser("serve", help="ingest continuously and serve the dashboard and API")
    serve.add_argument("--dir", default=None, help=store_help)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8050)
    serve.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"required unless bound to loopback (default: ${TOKEN_ENV})",
    )
    serve.add_argument(
        "--idle-timeout",
        type=_positive_int,
        default=60,
        help="seconds before a connection with no request in flight is closed (default: 60)",
    )
    serve.add_argument(
        "--public-url",
        action="append",
        default=[],
        help="an address the dashboard is reached at (proxy, DNS name); repeatable. Requests "
        "naming any other host are refused (DNS rebinding)",
    )

    serve.add_argument(
        "--alert-webhook",
        action="append",
        default=[],
        type=_webhook,
        metavar="URL",
        help="send an alert for every red verdict and crash to this webhook (Slack and Discord "
        "URLs are recognised, any other gets JSON); repeatable. Links use the first --public-url",
    )
    serve.add_argument(
        "--alerts",
        metavar="FILE",
        help="alert destinations (webhooks, e-mail over SMTP) and what each is told about, "
        "from a TOML file (README: Alerts)",
    )

    _add_intake_options(serve)

    alerts = sub.add_parser("alerts", help="alert destinations")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    alerts_test = alerts_sub.add_parser(
        "test", help="send a test message to every destination; say which failed and why"
    )
    alerts_test.add_argument(
        "--alert-webhook", action="append", default=[], type=_webhook, metavar="URL"
    )
    alerts_test.add_argument("--alerts", metavar="FILE", help="destinations from this file")
    alerts_test.add_argument("--public-url", default="http://127.0.0.1:8050")

    ingest = sub.add_parser("ingest", help="ingest the inbox once, without serving")
    ingest.add_argument("--dir", default=None, help=store_help)

    runs = sub.add_parser("runs", help="print the runs of a store")
    runs.add_argument("--dir", default=None, help=store_help)
    _add_demo_parser(sub, store_help)
    _add_landscape_parser(sub, store_help)
    _add_import_parser(sub, store_help)
    return parser


def _add_intake_options(serve: argparse.ArgumentParser) -> None:
    defaults = BacklogLimits()
    serve.add_argument(
        "--receivers",
        type=_natural_int,
        default=0,
        help="extra processes taking segment uploads on ports PORT+1..PORT+N; collectors learn "
        "them from the main port's answers (default: 0, the main process takes them)",
    )
    serve.add_argument(
        "--group-commit",
        action="store_true",
        help="segments arriving together share their flushes to disk (one syncfs per group; "
        "keep the store on its own file system)",
    )
    serve.add_argument(
        "--max-backlog-segments",
        type=_natural_int,
        default=defaults.max_segments,
        help="answer uploads 503 + Retry-After while more segments than this wait in the inbox "
        f"(0: no bound; default {defaults.max_segments})",
    )
    serve.add_argument(
        "--max-backlog-bytes",
        type=_natural_int,
        default=defaults.max_bytes,
        help="... or more bytes than this (0: no bound; default 2 GiB)",
    )


def _add_demo_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], store_help: str
) -> None:
    demo = sub.add_parser(
        "demo",
        help="train a batch of small healthy and doomed runs, live in the dashboard",
        description="Start the dashboard and train a batch of small real runs (GANs on generated "
        "waveforms, classifiers on scikit-learn's digits), healthy and doomed, in subprocesses. "
        "Needs torch and scikit-learn: pip install 'trainlight[demo]'.",
    )
    demo.add_argument("--dir", default=None, help=store_help)
    demo.add_argument(
        "--quick", action="store_true", help="short runs (under 3 minutes on 2 cores)"
    )
    demo.add_argument(
        "--no-serve",
        dest="serve",
        action="store_false",
        help="only train: leave the segments in the store's inbox (see `trainlight ingest`)",
    )
    demo.add_argument(
        "--jobs", type=_positive_int, default=2, help="trainings at a time (default 2)"
    )
    demo.add_argument("--port", type=int, default=8050, help="dashboard port on 127.0.0.1")


def _add_landscape_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], store_help: str
) -> None:
    landscape = sub.add_parser(
        "landscape",
        help="compute a run's 2-D loss surface from a saved checkpoint (needs torch)",
        description="Evaluate probe_loss on a points x points grid through the checkpoint's "
        "weights along the run's random direction (α; its recorded seed) and a second one (β; "
        "seed + 1), each filter-normalised to the checkpoint's weights as the run's slices are "
        "to the weights of their step, so the β = 0 row is the slice the run recorded at the "
        "checkpoint's step. Seed, span and points are read from the run's ingested "
        "landscape/* metrics unless given. Stored for the run page "
        "(<store>/surfaces/RUN_ID.json).",
    )
    landscape.add_argument("run_id", metavar="RUN_ID", help="the run the surface belongs to")
    landscape.add_argument(
        "--model", required=True, help="pkg.module:factory; factory() returns the nn.Module"
    )
    landscape.add_argument("--checkpoint", required=True, help="a state_dict saved with torch.save")
    landscape.add_argument(
        "--probe",
        required=True,
        help="pkg.module:probe_loss; probe_loss(model) returns a scalar loss on a fixed batch",
    )
    recorded = "(default: the run's, from the store)"
    landscape.add_argument(
        "--points",
        type=_positive_int,
        default=None,
        help=f"grid points per axis, odd >= 5 {recorded}",
    )
    landscape.add_argument(
        "--span", type=float, default=None, help=f"the grid covers [-span, span]^2 {recorded}"
    )
    landscape.add_argument(
        "--seed", type=_natural_int, default=None, help=f"the α direction's seed {recorded}"
    )
    landscape.add_argument("--dir", default=None, help=store_help)


_IMPORT_NOTE = (
    "Importing the same files again adds nothing. A source written to in the last 60 s may "
    "still be growing: only its complete chunks of events are imported and its runs stay "
    "running; import it again later for the rest (nothing is duplicated or lost). Runs of a "
    "source quiet for 60 s are closed as finished."
)


def _add_import_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], store_help: str
) -> None:
    importer = sub.add_parser(
        "import",
        help="import runs logged with TensorBoard or trackio, to triage them",
        description=f"Import the scalars of existing runs as trainlight runs. {_IMPORT_NOTE}",
    )
    kinds = importer.add_subparsers(dest="source_kind", required=True, metavar="SOURCE_KIND")
    for kind, metavar, what in (
        ("tensorboard", "LOGDIR", "a TensorBoard logdir: a run per directory of event files"),
        ("trackio", "DB", "a trackio project database (read-only): its runs, with their config"),
    ):
        parser = kinds.add_parser(kind, help=what, description=f"Import {what}. {_IMPORT_NOTE}")
        parser.add_argument("source", metavar=metavar)
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--dir", default=None, help=store_help)
        where.add_argument("--store", metavar="URL", help="a trainlight server, http://host:port")
        parser.add_argument(
            "--project", help="the runs' project (default: the logdir's name, the trackio project)"
        )
        parser.add_argument("--quiet", action="store_true", help="print failures only")


def _webhook(text: str) -> str:
    from trainlight.app.alerts.destinations import destination

    try:
        destination(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None  # never echo the URL: a secret
    return text


def _natural_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from trainlight.app.server import ServeOptions, serve

        destinations = _alert_destinations(args)
        if destinations is None:
            return 2
        options = ServeOptions(
            directory=args.dir,
            host=args.host,
            port=args.port,
            token=args.token,
            idle_timeout=args.idle_timeout,
            public_urls=tuple(args.public_url),
            receivers=args.receivers,
            group_commit=args.group_commit,
            backlog=BacklogLimits(args.max_backlog_segments, args.max_backlog_bytes),
            alert_destinations=tuple(destinations),
        )
        serve(options)
        return 0
    if args.command == "demo":
        return _demo(args)
    if args.command == "alerts":
        return _alerts_test(args)
    if args.command == "landscape":
        return _landscape(args)
    if args.command == "import":
        return _import(args)
    from trainlight.app.store.database import Store, StoreOpenError

    try:
        store = Store(StoreLayout.resolve(args.dir))
    except StoreOpenError as exc:
        print(f"trainlight: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "ingest":
            return _ingest(store)
        return _runs(store)
    finally:
        store.close()


def _alert_destinations(args: argparse.Namespace) -> list[Destination] | None:
    """`--alert-webhook`s and the `--alerts` file's destinations; None (said) if unusable."""
    from trainlight.app.alerts.config import AlertsFileError, load_alerts_file
    from trainlight.app.alerts.destinations import destination

    found = [destination(url) for url in args.alert_webhook]
    try:
        return found + (load_alerts_file(args.alerts) if args.alerts else [])
    except AlertsFileError as exc:
        print(f"trainlight: {exc}", file=sys.stderr)
        return None


def _alerts_test(args: argparse.Namespace) -> int:
    from trainlight.app.alerts.sender import send_test

    destinations = _alert_destinations(args)
    if not destinations:
        if destinations is not None:
            print("trainlight: name destinations with --alert-webhook or --alerts", file=sys.stderr)
        return 2
    results = send_test(destinations, args.public_url)
    for label, error in results:
        print(f"{label}: {'sent' if error is None else 'FAILED: ' + error}")
    return 1 if any(error is not None for _, error in results) else 0


def _demo(args: argparse.Namespace) -> int:
    from trainlight.demo.requirements import INSTALL_HINT, missing_requirements

    missing = missing_requirements()
    if missing:
        print(f"trainlight demo needs {', '.join(missing)}: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from trainlight.demo.command import DemoOptions, run_demo

    return run_demo(DemoOptions(args.dir, args.quick, args.serve, args.jobs, port=args.port))


def _landscape(args: argparse.Namespace) -> int:
    """Imported here, by name: the app never imports torch, only this command needs it."""
    try:
        surface = importlib.import_module("trainlight.collectors.landscape_surface")
    except ImportError as exc:
        print(f"trainlight landscape needs torch and rich: {exc}", file=sys.stderr)
        return 2
    try:
        seed, span, points = _slice_settings(args)
        job = surface.SurfaceJob(
            run_id=args.run_id,
            model=args.model,
            checkpoint=Path(args.checkpoint),
            probe=args.probe,
            points=points,
            span=span,
            directory=args.dir,
            seed=seed,
        )
        path = surface.run(job)
    except (ValueError, RuntimeError, ImportError, OSError) as exc:
        print(f"trainlight landscape: {exc}", file=sys.stderr)
        return 2
    described = f"seed {seed}, span {span}, {points} points"
    print(f"stored the loss surface of {args.run_id} ({described}) in {path}")
    return 0


def _import(args: argparse.Namespace) -> int:
    """Imported here, by name: the importers load TensorBoard's reader, which the app never
    needs."""
    try:
        command = importlib.import_module("trainlight.integrations.importers.command")
    except ImportError as exc:
        print(f"trainlight import needs trainlight's integrations: {exc}", file=sys.stderr)
        return 2
    request = command.ImportRequest(
        kind=args.source_kind,
        source=Path(args.source),
        directory=args.dir,
        url=args.store,
        project=args.project,
        quiet=args.quiet,
    )
    return int(command.run_import(request))


def _slice_settings(args: argparse.Namespace) -> tuple[int, float, int]:
    """--seed/--span/--points where given, else what the run's slices recorded; ValueError
    naming the options to pass when neither has them (e.g. while a server holds the store)."""
    from trainlight.app.store.read.landscape import SliceSettings

    layout = StoreLayout.resolve(args.dir)
    layout.surface_path(args.run_id)  # checks the run id before opening anything
    settings = SliceSettings(args.seed, args.span, args.points)
    if settings.missing() and layout.database.exists():
        settings = settings.over(_recorded_settings(layout, args.run_id))
    if settings.seed is None or settings.span is None or settings.points is None:
        raise ValueError(
            f"{layout.root} holds no landscape/{{seed,span,points}} of run {args.run_id} (logged "
            "by mon.landscape, read once ingested: `trainlight ingest`); pass "
            + ", ".join(settings.missing())
        )
    return settings.seed, settings.span, settings.points


def _recorded_settings(layout: StoreLayout, run_id: str) -> SliceSettings:
    from trainlight.app.store.database import Store, StoreOpenError
    from trainlight.app.store.read.landscape import recorded_settings

    try:
        store = Store(layout)
    except StoreOpenError as exc:
        raise ValueError(f"{exc} Or pass --seed, --span and --points.") from exc
    try:
        with store.read() as cur:
            return recorded_settings(cur, run_id)
    finally:
        store.close()


def _ingest(store: Store) -> int:
    from trainlight.app.store.ingest.inbox import Ingester

    stats = Ingester(store).ingest_pending()
    print(
        f"ingested {stats.segments} segment(s), {stats.rows} row(s); "
        f"{stats.duplicates} already present, {stats.rejected} rejected; "
        f"{len(stats.crashed_runs)} run(s) marked crashed"
    )
    return 0


def _runs(store: Store) -> int:
    from trainlight.app.store.database import utc_naive
    from trainlight.app.store.read.queries import list_runs
    from trainlight.app.terminal import runs_table_text

    now = utc_naive()
    with store.read() as cur:
        print(runs_table_text(list_runs(cur, now), now, color=sys.stdout.isatty()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
