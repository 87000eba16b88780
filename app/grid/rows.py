"""From `GridRow`s and a `GridState` to the grid's `rowData`: filter, sort, flatten.

Pure and cheap: what depends only on the data (badge states, reasons, the sparkline's SVG
points, ~0.3 s for 1,000 runs) is built by `prepare_rows` once per data version, for the runs
that changed, and cached; a refresh then only filters, sorts and adds the clock-dependent fields
(`view_rows`, a few ms).
Everything the browser needs to draw a row is precomputed here, so the grid's cell renderers are
a few lines of JavaScript without logic. The one exception is the age of the last update: rows
carry its time (`updated_ms`) and the browser formats "12s ago" against its own clock every
second, so a row is not resent merely because it grew older.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from trainlight.app.formatting import format_value
from trainlight.app.grid.delta import ShownRow, digest
from trainlight.app.store.read.grid import GridRow
from trainlight.app.store.read.queries import display_status
from trainlight.app.url_state import GridState
from trainlight.collectors.health.registry import signal_names
from trainlight.collectors.health.verdict import GREY, severity, worst

SPARK_WIDTH, SPARK_HEIGHT = 120, 24


@dataclass(frozen=True)
class Sparkline:
    """SVG polyline points of the finite values, and the x of every non-finite bucket."""

    points: str
    alarms: tuple[float, ...]


@dataclass(frozen=True)
class PreparedRow:
    """A run's row minus what depends on the clock, computed once per data version and shared
    through the cache (`record` is never mutated), so a refresh only filters, sorts and adds
    the status and position."""

    row: GridRow
    record: dict[str, Any]
    digest: str  # of `record`


@dataclass(frozen=True)
class FilterOptions:
    projects: tuple[str, ...]
    groups: tuple[str, ...]
    tags: tuple[str, ...]


def worst_state(row: GridRow) -> str:
    return worst([s.state for s in row.health.values()])


def prepare_rows(
    rows: Sequence[GridRow], previous: Sequence[PreparedRow] = ()
) -> tuple[PreparedRow, ...]:
    """Every run's record minus the clock, with its digest: once per data version, and only
    for the runs whose row differs from `previous` (an ingest changes a few runs of 1,000)."""
    known = {p.row.run_id: p for p in previous}
    prepared = []
    for row in rows:
        before = known.get(row.run_id)
        if before is not None and before.row == row:  # NaN != NaN: such rows are rebuilt
            prepared.append(before)
            continue
        record = static_record(row)
        prepared.append(PreparedRow(row, record, digest(record)))
    return tuple(prepared)


def view_rows(
    rows: Sequence[PreparedRow], state: GridState, now: datetime, stale_after: timedelta
) -> list[ShownRow]:
    """The grid's rowData for a view: filtered, sorted, one flat dict per run; `order` is the
    row's position (the grid sorts by it, so row transactions keep the order)."""
    by_id = {p.row.run_id: p for p in rows if matches(p.row, state)}
    shown = []
    for order, row in enumerate(sort_rows([p.row for p in by_id.values()], state.sort)):
        prepared = by_id[row.run_id]
        clock = {**clock_fields(row, now, stale_after), "order": order}
        record = {**prepared.record, **clock}
        shown.append(ShownRow(record, digest((prepared.digest, *clock.values()))))
    return shown


def matches(row: GridRow, state: GridState) -> bool:
    if state.project and row.project != state.project:
        return False
    if state.group and row.group != state.group:
        return False
    if state.tag and state.tag not in row.tags:
        return False
    if state.states and worst_state(row) not in state.states:
        return False
    if state.text:
        needle = state.text.casefold()
        haystack = " ".join([row.name, row.run_id, row.project, row.group, *row.tags])
        return needle in haystack.casefold()
    return True


def sort_rows(rows: Sequence[GridRow], sort: str) -> list[GridRow]:
    """`health`: worst first (then most reds, most ambers, most recent); `recency`; `name`."""
    by_recency = sorted(rows, key=lambda r: r.updated_at or datetime.min, reverse=True)
    if sort == "recency":
        return by_recency
    if sort == "name":
        return sorted(rows, key=lambda r: (r.name.casefold(), r.run_id))
    return sorted(by_recency, key=_health_rank)  # stable: recency breaks ties


def _health_rank(row: GridRow) -> tuple[int, int, int]:
    states = [s.state for s in row.health.values()]
    return (-severity(worst(states)), -states.count("red"), -states.count("amber"))


def row_record(row: GridRow, now: datetime, stale_after: timedelta) -> dict[str, Any]:
    """Everything the grid shows of a run, flat."""
    return {**static_record(row), **clock_fields(row, now, stale_after)}


def clock_fields(row: GridRow, now: datetime, stale_after: timedelta) -> dict[str, Any]:
    """The fields that change with time alone: the `stale` status (the age of the last update
    is formatted in the browser, from `updated_ms`)."""
    return {"status": display_status(row.status, row.updated_at, now, stale_after)}


def static_record(row: GridRow) -> dict[str, Any]:
    """The fields that only change with the data (the sparkline's SVG points included)."""
    spark, saved = sparkline(row.spark), saved_steps(row)
    record: dict[str, Any] = {
        "run_id": row.run_id,
        "name": row.name,
        "project": row.project,
        "group": row.group,
        "tags": ", ".join(row.tags),
        "stop_requested": row.stop_requested,
        "worst": worst_state(row),
        "lca_layers": [
            [light.layer, light.state, format_value(light.lca)] for light in row.lca_layers
        ],
        "spark": spark.points,
        "spark_alarms": list(spark.alarms),
        "spark_title": _spark_title(row),
        "last_step": row.last_step,
        "step_text": "" if row.last_step is None else f"{row.last_step:,}",
        "saved_steps": saved,
        "saved_hours": saved / row.steps_per_s / 3600 if row.steps_per_s else 0.0,
        "updated_ms": epoch_ms(row.updated_at),
    }
    for signal in signal_names():
        current = row.health.get(signal)
        record[f"h_{signal}"] = current.state if current else GREY
        record[f"r_{signal}"] = _reason(signal, current.state if current else GREY, current)
    return record


def saved_steps(row: GridRow) -> int:
    """The steps a stopped run (by a person or auto-pruned) did not run of its declared length:
    the compute the stop saved; 0 when it was not stopped or declared no length."""
    if row.status != "stopped" or row.planned_steps is None or row.last_step is None:
        return 0
    return max(0, row.planned_steps - (row.last_step + 1))


def epoch_ms(moment: datetime | None) -> int | None:
    """Unix milliseconds of a store timestamp (naive UTC), for the browser's clock; None: never."""
    if moment is None:
        return None
    return round(moment.replace(tzinfo=UTC).timestamp() * 1000)


def _reason(signal: str, state: str, current: Any) -> str:
    reason = current.reason if current is not None and current.reason else ""
    if not reason:
        reason = "no data yet" if current is None else state
    return f"{signal}: {reason}"


def _spark_title(row: GridRow) -> str:
    if not row.spark:
        return "no scalar logged yet"
    return f"{row.spark_key}: last {format_value(row.spark[-1])}"


def sparkline(
    values: Sequence[float], width: int = SPARK_WIDTH, height: int = SPARK_HEIGHT
) -> Sparkline:
    """Scale bucket values into a width×height box (y down); non-finite values become alarms.

    Runs 60 times per run on every new data version, so it avoids `round` and `:g` (a third
    of its time) and formats with one decimal instead."""
    if not values:
        return Sparkline("", ())
    step = width / max(len(values) - 1, 1)
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    pad = 2.0
    scale = (height - 2 * pad) / (hi - lo or 1.0)
    points, alarms = [], []
    for i, value in enumerate(values):
        if not math.isfinite(value):
            alarms.append(round(i * step, 1))
            continue
        points.append(f"{_decimal(i * step)},{_decimal(pad + (hi - value) * scale)}")
    return Sparkline(" ".join(points), tuple(alarms))


def _decimal(value: float) -> str:
    """One decimal, without a trailing `.0` (SVG coordinates, kept short)."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def filter_options(rows: Sequence[GridRow]) -> FilterOptions:
    return FilterOptions(
        projects=tuple(sorted({r.project for r in rows if r.project})),
        groups=tuple(sorted({r.group for r in rows if r.group})),
        tags=tuple(sorted({t for r in rows for t in r.tags})),
    )
