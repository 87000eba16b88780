"""`trainlight import tensorboard|trackio SOURCE`: read the runs, send them, say what happened.

The shell around the readers and the sender: it picks the transport the collectors use for the
same destination (the store's inbox, or a server over HTTP with the local outbox), walks the
source's runs one at a time (one run's events in memory at once), prints a line per run and a
total to stderr, and waits a bounded time for HTTP delivery. A run that cannot be read is
reported in one line and the others go on; the exit status says whether anything failed.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from trainlight.collectors.http_sink import HttpSink
from trainlight.collectors.problems import Problems
from trainlight.collectors.schema import StoreLayout
from trainlight.collectors.sinks import InboxSink, Sink
from trainlight.integrations.importers.segments import CHUNK_EVENTS, RunReport, send_run
from trainlight.integrations.importers.source import RunFailure, SourceError, SourceRun

Reader = Callable[[Path, str | None, float], Iterator[SourceRun | RunFailure]]

# kind -> (module, reader function, the package it needs); imported on use only.
READERS = {
    "tensorboard": ("trainlight.integrations.importers.tensorboard", "read_logdir", "tensorboard"),
    "trackio": ("trainlight.integrations.importers.trackio", "read_database", None),
}
OK, FAILED, MISSING_PACKAGE = 0, 1, 2


@dataclass(frozen=True)
class ImportRequest:
    """What `trainlight import` was asked to do."""

    kind: str  # a key of READERS
    source: Path  # the logdir or the database file
    directory: str | None = None  # the store directory (None: $TRAINLIGHT_DIR or the default)
    url: str | None = None  # a trainlight server instead of a directory
    project: str | None = None  # None: the logdir's name / the trackio project
    quiet: bool = False  # no progress lines (failures are still reported)
    chunk_events: int = CHUNK_EVENTS  # fixed in use (the idempotency contract); tests vary it
    delivery_timeout_s: float = 60.0  # how long to wait for a server to take the segments


@dataclass
class _Totals:
    runs: int = 0
    events: int = 0
    sent: int = 0
    held_back: int = 0
    failed: int = 0


def run_import(request: ImportRequest, out: TextIO | None = None, now: float | None = None) -> int:
    """Import every run of the source; 0 when all were imported, 1 when any failed."""
    out = out or sys.stderr
    try:
        reader = _reader(request.kind)
    except ImportError as exc:
        print(f"trainlight import {request.kind}: {exc}", file=out)
        return MISSING_PACKAGE
    problems = Problems()
    try:
        sink, where = _sink(request, problems)
    except ValueError as exc:
        print(f"trainlight import: {exc}", file=out)
        return FAILED
    totals = _Totals()
    try:
        for item in reader(request.source, request.project, now or time.time()):
            _import_one(item, sink, request, totals, out)
    except SourceError as exc:
        print(f"trainlight import {request.kind}: {exc}", file=out)
        totals.failed += 1
    undelivered = _deliver(sink, request.delivery_timeout_s)
    if undelivered:
        print(f"trainlight import: {undelivered} segment(s) not delivered: {sink.fate()}", file=out)
    if not request.quiet:
        print(_total_line(totals, where), file=out)
    return FAILED if totals.failed or undelivered else OK


def _reader(kind: str) -> Reader:
    module_name, function, package = READERS[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if package is None:
            raise
        raise ImportError(f"needs the {package} package: pip install {package} ({exc})") from exc
    reader: Reader = getattr(module, function)
    return reader


def _sink(request: ImportRequest, problems: Problems) -> tuple[Sink, str]:
    """The transport a Monitor would use for the same destination, and its description."""
    if request.url is not None:
        if not request.url.startswith(("http://", "https://")):
            raise ValueError(f"--store must be an http:// or https:// URL, got {request.url!r}")
        return HttpSink(request.url, problems), request.url
    layout = StoreLayout.resolve(request.directory)
    return InboxSink(layout, problems), str(layout.root)


def _import_one(
    item: SourceRun | RunFailure, sink: Sink, request: ImportRequest, totals: _Totals, out: TextIO
) -> None:
    if isinstance(item, RunFailure):
        totals.failed += 1
        print(f"  {item.name}: FAILED: {item.reason}", file=out)
        return
    if not item.events:
        if not request.quiet:
            print(f"  {item.name}: no scalar events, nothing to import", file=out)
        return
    try:
        report = send_run(item, sink, request.chunk_events)
    except ValueError as exc:  # a header the store would refuse (a name over 200 characters...)
        totals.failed += 1
        print(f"  {item.name}: FAILED: {exc}", file=out)
        return
    totals.runs += 1
    totals.events += report.events
    totals.sent += report.sent
    totals.held_back += report.held_back
    if not request.quiet:
        print(f"  {run_line(report)}", file=out)


def run_line(report: RunReport) -> str:
    """One run's progress line."""
    line = f"{report.name} ({report.run_id}): {report.events} events, {report.sent} chunk(s) sent"
    if report.held_back:
        return (
            f"{line}, 1 skipped ({report.held_back} events of an incomplete chunk: the source "
            "is still being written; import it again later for the rest)"
        )
    return f"{line}, finished" if report.closed else f"{line}, still running"


def _total_line(totals: _Totals, where: str) -> str:
    line = (
        f"imported {totals.runs} run(s), {totals.events} events, {totals.sent} chunk(s) "
        f"into {where}"
    )
    if totals.held_back:
        line += f"; {totals.held_back} events skipped until a later import"
    if totals.failed:
        line += f"; {totals.failed} run(s) failed"
    return line


def _deliver(sink: Sink, timeout_s: float) -> int:
    """Wait (bounded) until the sink has delivered everything; how many segments it has not."""
    deadline = time.monotonic() + timeout_s
    sink.finish_by(deadline)
    while sink.pending() and time.monotonic() < deadline:
        sink.retry()
        if sink.pending():
            time.sleep(0.2)
    return sink.pending()
