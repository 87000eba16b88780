"""Series and run facts for the drill-down pages, read in few queries and downsampled in SQL.

A 1M-step run draws instantly because every curve comes back as at most `buckets` points (see
`buckets.py`), and all the curves of one table come back from one query. NaN and ±Inf are
data (STYLE rule 7): they stay out of the aggregates and come back separately so the figures
mark them. Everything returns frozen dataclasses.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

import duckdb
import numpy as np

from trainlight.app.store.read.buckets import Series, StepRange, bucketed, span_clauses, to_series
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.schema import NO_LAYER, RESERVED_PREFIXES
from trainlight.collectors.system_figures import SYSTEM_KEYS
from trainlight.collectors.wire import (
    CATCH_PLATEAU_STEP,
    CATCH_STEP,
    OVERFIT_BEST,
    OVERFIT_FROM,
    PROGRESS_SLOW,
    PROGRESS_STALLED,
    SPIKE_LEVEL,
    SPIKE_ONSET,
    SPIKE_RECOVERED,
)

DEFAULT_BUCKETS = 1000
WHOLE_RUN = StepRange()


@dataclass(frozen=True)
class HealthChange:
    """One row of `health`: a signal's state change."""

    signal: str
    state: str
    step: int | None
    reason: str
    updated_at: datetime | None


@dataclass(frozen=True)
class CatchMarks:
    plateau_step: int | None = None
    catch_step: int | None = None


@dataclass(frozen=True)
class SpikeMark:
    """A main-loss spike the `spike` rule found: where, how high, above what level, and when
    the loss came back (None: not yet)."""

    step: int
    peak: float
    level: float
    back: int | None


@dataclass(frozen=True)
class OverfitMark:
    """A rise of the validation loss the `overfit` rule found: where the loss was at its best
    (and how low), and the step the rule first saw it rising."""

    best_step: int
    best: float
    seen_at: int


@dataclass(frozen=True)
class StepClock:
    """How fast a run stepped: steps/s between consecutive points of its main loss (bucketed),
    and where the `progress` rule found it stalled or slowed (step, seconds or factor)."""

    steps: tuple[float, ...] = ()
    rates: tuple[float, ...] = ()
    stalls: tuple[tuple[int, float], ...] = ()
    slowdowns: tuple[tuple[int, float], ...] = ()
    system: dict[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)  # sampled


@dataclass(frozen=True)
class Judging:
    """What the health rules judged the run with: its roles and its (overridden) thresholds."""

    roles: dict[str, str] = field(default_factory=dict)  # adversary -> d_loss, ...
    settings: HealthSettings = field(default_factory=HealthSettings)


def empty_series(name: str) -> Series:
    nothing = np.empty(0, dtype=np.float64)
    return Series(name, nothing, nothing, nothing, nothing)


def scalar_keys(cur: duckdb.DuckDBPyConnection, run_id: str) -> tuple[str, ...]:
    """The run-level keys the user logged (reserved signal keys left out), sorted."""
    rows = cur.execute(
        "SELECT key FROM latest WHERE run_id = ? AND layer = ? ORDER BY key", [run_id, NO_LAYER]
    ).fetchall()
    return tuple(k for (k,) in rows if not k.startswith(RESERVED_PREFIXES))


def metric_series(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    keys: Sequence[str],
    span: StepRange = WHOLE_RUN,
    buckets: int = DEFAULT_BUCKETS,
) -> dict[str, Series]:
    """`metrics` rows of every key in `span`, at most `buckets` points each; keys without rows
    are left out."""
    return {b.key: to_series(b) for b in bucketed(cur, "metrics", run_id, keys, span, buckets)}


def scalar_series(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    key: str,
    span: StepRange = WHOLE_RUN,
    buckets: int = DEFAULT_BUCKETS,
) -> Series:
    """One key's series (empty when it has no rows in `span`)."""
    return metric_series(cur, run_id, [key], span, buckets).get(key) or empty_series(key)


def layer_series_of(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    keys: Sequence[str],
    span: StepRange = WHOLE_RUN,
    buckets: int = DEFAULT_BUCKETS,
    cumulative: Collection[str] = (),
) -> dict[str, tuple[Series, ...]]:
    """`layer_metrics` rows of every key, one series per layer in model order (first written).

    Keys in `cumulative` come back as each layer's running total from the run's first step
    (cumulative LCA), also when `span` starts later.
    """
    groups = bucketed(cur, "layer_metrics", run_id, keys, span, buckets)
    before = {
        key: _sums_before(cur, run_id, key, span.start)
        for key in cumulative
        if span.start is not None
    }
    out: dict[str, list[Series]] = {}
    for found in groups:
        start = before.get(found.key, {}).get(found.layer, 0.0) if found.key in cumulative else None
        out.setdefault(found.key, []).append(to_series(found, running_from=start))
    return {key: tuple(series) for key, series in out.items()}


def layer_series(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    key: str,
    span: StepRange = WHOLE_RUN,
    buckets: int = DEFAULT_BUCKETS,
    cumulative: bool = False,
) -> tuple[Series, ...]:
    """One key's series per layer (see `layer_series_of`)."""
    found = layer_series_of(cur, run_id, [key], span, buckets, [key] if cumulative else ())
    return found.get(key, ())


def _sums_before(
    cur: duckdb.DuckDBPyConnection, run_id: str, key: str, start: int | None
) -> dict[str, float]:
    rows = cur.execute(
        """SELECT layer, sum(value) FROM layer_metrics
           WHERE run_id = ? AND key = ? AND step < ? AND isfinite(value) GROUP BY layer""",
        [run_id, key, start],
    ).fetchall()
    return {layer: float(total) for layer, total in rows}


def layer_totals(cur: duckdb.DuckDBPyConnection, run_id: str, key: str) -> dict[str, float]:
    """Sum of `key`'s finite values per layer over the whole run, in model order."""
    rows = cur.execute(
        """SELECT layer, coalesce(sum(value) FILTER (WHERE isfinite(value)), 0)
           FROM layer_metrics WHERE run_id = ? AND key = ?
           GROUP BY layer ORDER BY min(rowid)""",
        [run_id, key],
    ).fetchall()
    return {layer: float(total) for layer, total in rows}


def first_nonfinite(
    cur: duckdb.DuckDBPyConnection, run_id: str, keys: Sequence[str], span: StepRange
) -> tuple[tuple[str, int, float], ...]:
    """(key, step, value) of the first NaN/±Inf of each of `keys` that has one in `span`."""
    where, params = span_clauses(span)
    rows = cur.execute(
        f"""SELECT key, min(step), arg_min(value, step) FROM metrics
            WHERE run_id = ? AND list_contains(?, key) AND NOT isfinite(value){where}
            GROUP BY key ORDER BY key""",
        [run_id, list(keys), *params],
    ).fetchall()
    return tuple((key, int(step), float(value)) for key, step, value in rows)


def health_history(cur: duckdb.DuckDBPyConnection, run_id: str) -> tuple[HealthChange, ...]:
    """Every state change of the run, oldest first."""
    rows = cur.execute(
        """SELECT signal, state, step, reason, updated_at FROM health
           WHERE run_id = ? ORDER BY seq""",
        [run_id],
    ).fetchall()
    return tuple(HealthChange(s, st, step, reason or "", at) for s, st, step, reason, at in rows)


def current_health(history: Sequence[HealthChange]) -> dict[str, HealthChange]:
    """The latest change per signal (its current state)."""
    return {change.signal: change for change in history}


def catch_marks(cur: duckdb.DuckDBPyConnection, run_id: str) -> CatchMarks:
    """The plateau and catch steps the catch rule recorded (latest of each), if any."""
    rows = dict(
        cur.execute(
            """SELECT key, value FROM latest WHERE run_id = ? AND layer = ?
               AND key IN (?, ?)""",
            [run_id, NO_LAYER, CATCH_PLATEAU_STEP, CATCH_STEP],
        ).fetchall()
    )
    return marks_from(rows)


def marks_from(latest: Mapping[str, float | None]) -> CatchMarks:
    """The catch marks among a run's latest values."""
    plateau, caught = latest.get(CATCH_PLATEAU_STEP), latest.get(CATCH_STEP)
    return CatchMarks(_as_step(plateau), _as_step(caught))


def _as_step(value: float | None) -> int | None:
    return None if value is None or value != value else int(value)


def run_judging(cur: duckdb.DuckDBPyConnection, run_id: str) -> Judging:
    """The roles (`mon.roles(...)`) and health settings the rules judged the run with.

    Both travel in every segment's header; the rules' saved state (`health_state`) keeps the
    ones in force, so this is what the verdicts on the page were computed with. Settings a newer
    or older trainlight does not know are ignored rather than failing the page.
    """
    rows = cur.execute("SELECT state FROM health_state WHERE run_id = ?", [run_id]).fetchall()
    if not rows:
        return Judging()
    state = json.loads(rows[0][0])  # json: the state may hold NaN
    roles = {str(k): str(v) for k, v in (state.get("roles") or {}).items() if v}
    known = {f.name for f in fields(HealthSettings)}
    saved = {k: v for k, v in (state.get("settings") or {}).items() if k in known}
    try:
        settings = HealthSettings.from_dict(saved)
    except (TypeError, ValueError):
        settings = HealthSettings()
    return Judging(roles, settings)


def run_roles(cur: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, str]:
    """The roles the health rules judged the run with (adversary → d_loss)."""
    return run_judging(cur, run_id).roles


def recorded(
    cur: duckdb.DuckDBPyConnection, run_id: str, keys: Sequence[str]
) -> dict[str, list[tuple[int, float]]]:
    """Run-level rows of `keys` the rules recorded as they judged (a handful per run): key ->
    (step, value) in step order; keys without rows left out."""
    rows = cur.execute(
        """SELECT CAST(key AS VARCHAR), step, value FROM metrics
           WHERE run_id = ? AND key IN (SELECT unnest(?)) ORDER BY step""",
        [run_id, list(keys)],
    ).fetchall()
    found: dict[str, list[tuple[int, float]]] = {}
    for key, step, value in rows:
        found.setdefault(key, []).append((int(step), value))
    return found


def spike_marks(cur: duckdb.DuckDBPyConnection, run_id: str) -> tuple[SpikeMark, ...]:
    """The spikes the rule recorded as it judged (`spike/…` rows)."""
    rows = recorded(cur, run_id, (SPIKE_ONSET, SPIKE_LEVEL, SPIKE_RECOVERED))
    levels = dict(rows.get(SPIKE_LEVEL, []))
    back = {step - int(took): step for step, took in rows.get(SPIKE_RECOVERED, [])}
    return tuple(
        SpikeMark(step, peak, levels.get(step, math.nan), back.get(step))
        for step, peak in sorted(dict(rows.get(SPIKE_ONSET, [])).items())
    )


def overfit_marks(cur: duckdb.DuckDBPyConnection, run_id: str) -> tuple[OverfitMark, ...]:
    """The rises the rule recorded as it judged (`overfit/…` rows, two per rise)."""
    rows = recorded(cur, run_id, (OVERFIT_FROM, OVERFIT_BEST))
    bests = dict(rows.get(OVERFIT_BEST, []))
    return tuple(
        OverfitMark(int(best_step), bests.get(seen, math.nan), seen)
        for seen, best_step in sorted(dict(rows.get(OVERFIT_FROM, [])).items())
    )


def step_clock(
    cur: duckdb.DuckDBPyConnection, run_id: str, key: str, points: int = 500
) -> StepClock:
    """The run's step rate from the wall times of `key`'s rows (`points` buckets of steps),
    and the `progress/…` rows the rule recorded."""
    rows = cur.execute(
        """SELECT min(step), epoch(min(wall_time)) FROM metrics
           WHERE run_id = ? AND key = ? AND wall_time IS NOT NULL
           GROUP BY step // greatest(1, (SELECT (max(step) - min(step)) // ? FROM metrics
                                         WHERE run_id = ? AND key = ?))
           ORDER BY 1""",
        [run_id, key, points, run_id, key],
    ).fetchall()
    steps, rates = [], []
    for (s0, t0), (s1, t1) in itertools.pairwise(rows):
        if t1 > t0:
            steps.append(float(s1))
            rates.append((s1 - s0) / (t1 - t0))
    marks = recorded(cur, run_id, (PROGRESS_STALLED, PROGRESS_SLOW, *SYSTEM_KEYS))
    return StepClock(
        tuple(steps),
        tuple(rates),
        tuple(marks.pop(PROGRESS_STALLED, [])),
        tuple(marks.pop(PROGRESS_SLOW, [])),
        {name: tuple(points) for name, points in marks.items()},  # the sampled figures
    )
