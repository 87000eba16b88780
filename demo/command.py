"""`trainlight demo`: start the dashboard, run the batch of trainings, show their progress.

Orchestration only, and torch-free: the trainings run as `python -m trainlight.demo.train`
subprocesses (at most `jobs` at a time, each on one torch thread) writing into the store's inbox;
the dashboard is `trainlight serve` in a child process. With `serve=False` nothing reads the
inbox: the segments wait there for `trainlight serve` or `trainlight ingest`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from rich.console import Console

from trainlight.collectors.schema import StoreLayout
from trainlight.demo.catalogue import demo_runs
from trainlight.demo.dashboard import (
    Dashboard,
    DashboardError,
    HealthPoller,
    fetch_health,
    start_dashboard,
)
from trainlight.demo.jobs import CRASHED, Job, JobPool, JobStatus
from trainlight.demo.progress import LiveView, LogView, make_console, summary_lines, view_for
from trainlight.demo.recipes import RunSpec

LOG_DIR = "demo-logs"  # inside the store directory: each training's stderr, the server's log
INGEST_SETTLE_S = 3.0  # after the last training, time for the server to ingest its last segments


@dataclass(frozen=True)
class DemoOptions:
    directory: str | None = None
    quick: bool = False
    serve: bool = True
    jobs: int = 2
    host: str = "127.0.0.1"
    port: int = 8050


def training_job(spec: RunSpec, layout: StoreLayout) -> Job:
    argv = (sys.executable, "-m", "trainlight.demo.train", "--store", str(layout.root))
    log_name = "".join(c if c.isalnum() else "-" for c in spec.name) + ".log"
    return Job(
        name=spec.name,
        argv=(*argv, "--spec", spec.to_json()),
        total_steps=spec.steps,
        log_path=layout.root / LOG_DIR / log_name,
    )


def training_env() -> dict[str, str]:
    """The trainings share the machine: one thread each, unbuffered event lines."""
    single = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    return {**os.environ, **single, "PYTHONUNBUFFERED": "1"}


def run_demo(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo; returns the exit code (0 ok, 1 a training crashed, 2 cannot run, 130 ^C).

    The caller checks `requirements.missing_requirements()` first (this module imports rich).
    """
    console = console or make_console()
    if threading.current_thread() is not threading.main_thread():
        return _run_demo(options, console)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` ends the demo as Ctrl-C does
    try:
        return _run_demo(options, console)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_demo(options: DemoOptions, console: Console) -> int:
    layout = StoreLayout.resolve(options.directory)
    layout.root.mkdir(parents=True, exist_ok=True)
    specs = demo_runs(options.quick)
    dashboard = None
    if options.serve:
        try:
            dashboard = start_dashboard(
                layout.root, options.host, options.port, layout.root / LOG_DIR / "serve.log"
            )
        except DashboardError as exc:
            console.print(f"trainlight demo: {exc}; see {layout.root / LOG_DIR / 'serve.log'}")
            return 2
    try:
        return _train_and_show(options, specs, layout, dashboard, console)
    except KeyboardInterrupt:  # outside the trainings (they handle their own): just leave
        return 130
    finally:
        if dashboard is not None:
            dashboard.stop()


def _train_and_show(
    options: DemoOptions,
    specs: Sequence[RunSpec],
    layout: StoreLayout,
    dashboard: Dashboard | None,
    console: Console,
) -> int:
    where = f"dashboard {dashboard.url}" if dashboard else f"store {layout.root} (no dashboard)"
    console.print(f"trainlight demo: {len(specs)} trainings, {options.jobs} at a time; {where}")
    pool = JobPool([training_job(s, layout) for s in specs], options.jobs, training_env())
    started = time.monotonic()

    def title() -> str:
        return f"{time.monotonic() - started:4.0f}s"

    with view_for(console, title) as view:
        if dashboard is None:
            statuses = pool.run(lambda s: view.update(s, {}))
        else:
            statuses = _run_with_badges(pool, dashboard, view)
    for line in summary_lines(statuses):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"wall time {time.monotonic() - started:.0f}s", highlight=False)
    if pool.interrupted:
        return 130
    code = 1 if any(s.state == CRASHED for s in statuses) else 0
    if dashboard is None:
        console.print(
            f"the segments wait in {layout.inbox}: `trainlight serve --dir {layout.root}` "
            "ingests and shows them",
            soft_wrap=True,
        )
        return code
    console.print(f"the dashboard stays up at {dashboard.url}: Ctrl-C to stop it")
    _wait_for_ctrl_c(dashboard)
    return code


def _run_with_badges(
    pool: JobPool, dashboard: Dashboard, view: LiveView | LogView
) -> tuple[JobStatus, ...]:
    """Run the pool while the dashboard's badges are polled; end on its final verdicts."""
    with HealthPoller(dashboard.url) as poller:
        statuses = pool.run(lambda s: view.update(s, poller.latest))
    if not pool.interrupted:
        time.sleep(INGEST_SETTLE_S)  # the last segments reach the inbox as the trainings end
        view.update(statuses, fetch_health(dashboard.url) or poller.latest)
    return statuses


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _wait_for_ctrl_c(dashboard: Dashboard) -> None:
    try:
        while dashboard.process.poll() is None:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
