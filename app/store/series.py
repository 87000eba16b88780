"""Series for the drill-down pages: downsampled in SQL, so a 1M-step run draws instantly.

Long series are cut into at most `buckets` equal step ranges and each bucket comes back as one
point: its mean, min and max (the envelope keeps spikes that a plain stride would skip). NaN and
±Inf are data (STYLE rule 7): they are left out of the aggregates and returned separately so the
figures can mark them instead of silently dropping them. Everything returns frozen dataclasses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from trainlight.collectors.schema import NO_LAYER

DEFAULT_BUCKETS = 1000
RESERVED_PREFIXES = ("runaway/", "catch/", "lca/")
MAX_NONFINITE = 1000  # non-finite points returned per series (the first ones)


@dataclass(frozen=True)
class StepRange:
    """Inclusive step bounds; None means open on that side."""

    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Series:
    """One downsampled series: x = mean step of each bucket, mean/low/high of its finite values."""

    name: str
    steps: tuple[float, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    nonfinite: tuple[tuple[int, float], ...] = ()  # (step, NaN or ±Inf), first MAX_NONFINITE
    count: int = 0  # rows behind the series (before downsampling)


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


def scalar_keys(cur: duckdb.DuckDBPyConnection, run_id: str) -> tuple[str, ...]:
    """The run-level keys the user logged (reserved signal keys left out), sorted."""
    rows = cur.execute(
        "SELECT key FROM latest WHERE run_id = ? AND layer = ? ORDER BY key", [run_id, NO_LAYER]
    ).fetchall()
    return tuple(k for (k,) in rows if not k.startswith(RESERVED_PREFIXES))


def scalar_series(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    key: str,
    span: StepRange = StepRange(),
    buckets: int = DEFAULT_BUCKETS,
) -> Series:
    """`metrics` rows of one key in `span`, at most `buckets` points."""
    where, params = _where(run_id, span, "key = ?", [key])
    [series] = _bucketed(cur, "metrics", where, params, buckets, by_layer=False, default=key)
    return series


def layer_names(cur: duckdb.DuckDBPyConnection, run_id: str, key: str) -> tuple[str, ...]:
    """Layers with rows of `key`, in the order they were first written (model order)."""
    rows = cur.execute(
        """SELECT layer FROM layer_metrics WHERE run_id = ? AND key = ?
           GROUP BY layer ORDER BY min(rowid)""",
        [run_id, key],
    ).fetchall()
    return tuple(layer for (layer,) in rows)


def layer_series(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    key: str,
    span: StepRange = StepRange(),
    buckets: int = DEFAULT_BUCKETS,
    cumulative: bool = False,
) -> tuple[Series, ...]:
    """`layer_metrics` rows of `key`, one downsampled series per layer, in model order.

    With `cumulative`, each layer's values are its running sum first (cumulative LCA).
    """
    where, params = _where(run_id, span, "key = ?", [key])
    if cumulative:
        source = """(SELECT step, layer, sum(value) OVER (PARTITION BY layer ORDER BY step
                      ROWS UNBOUNDED PRECEDING) AS value
                      FROM layer_metrics WHERE run_id = ? AND key = ?)"""
        where, params = _where_cumulative(span, [run_id, key])
    else:
        source = "layer_metrics"
    found = _bucketed(cur, source, where, params, buckets, by_layer=True, default=key)
    order = {name: i for i, name in enumerate(layer_names(cur, run_id, key))}
    return tuple(sorted(found, key=lambda s: order.get(s.name, len(order))))


def layer_totals(cur: duckdb.DuckDBPyConnection, run_id: str, key: str) -> dict[str, float]:
    """Sum of `key` per layer over the whole run (cumulative LCA per layer), in model order."""
    rows = cur.execute(
        """SELECT layer, sum(value) FROM layer_metrics WHERE run_id = ? AND key = ?
           GROUP BY layer ORDER BY min(rowid)""",
        [run_id, key],
    ).fetchall()
    return {layer: float(total) for layer, total in rows}


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
               AND key IN ('catch/plateau_step', 'catch/catch_step')""",
            [run_id, NO_LAYER],
        ).fetchall()
    )
    plateau, caught = rows.get("catch/plateau_step"), rows.get("catch/catch_step")
    return CatchMarks(_as_step(plateau), _as_step(caught))


def _as_step(value: float | None) -> int | None:
    return None if value is None or value != value else int(value)


def _where(
    run_id: str, span: StepRange, extra: str, extra_params: list[Any]
) -> tuple[str, list[Any]]:
    return _within(span, ["run_id = ?", extra], [run_id, *extra_params])


def _where_cumulative(span: StepRange, source_params: list[Any]) -> tuple[str, list[Any]]:
    return _within(span, ["true"], list(source_params))


def _within(span: StepRange, clauses: list[str], params: list[Any]) -> tuple[str, list[Any]]:
    """`clauses` AND the step range, with its parameters appended."""
    if span.start is not None:
        clauses.append("step >= ?")
        params.append(span.start)
    if span.end is not None:
        clauses.append("step <= ?")
        params.append(span.end)
    return " AND ".join(clauses), params


def _bucketed(
    cur: duckdb.DuckDBPyConnection,
    source: str,
    where: str,
    params: list[Any],
    buckets: int,
    *,
    by_layer: bool,
    default: str,
) -> list[Series]:
    """Min/mean/max per step bucket (per layer), plus the non-finite points, in one round trip."""
    name = "layer" if by_layer else "?"
    name_params = [] if by_layer else [default]
    rows = cur.execute(
        f"""
        WITH s AS (SELECT step, {name} AS name, value FROM {source} WHERE {where}),
        b AS (SELECT name, min(step) AS lo, max(step) - min(step) + 1 AS width
              FROM s GROUP BY name),
        g AS (SELECT s.name, s.step, s.value,
                     CAST(floor((s.step - b.lo) * ? / b.width) AS BIGINT) AS bucket
              FROM s JOIN b USING (name))
        SELECT name, bucket, avg(step), count(*),
               avg(value) FILTER (WHERE isfinite(value)),
               min(value) FILTER (WHERE isfinite(value)),
               max(value) FILTER (WHERE isfinite(value))
        FROM g GROUP BY name, bucket ORDER BY name, bucket""",
        [*name_params, *params, buckets],
    ).fetchall()
    bad = cur.execute(
        f"""WITH s AS (SELECT step, {name} AS name, value FROM {source}
                       WHERE {where} AND NOT isfinite(value))
            SELECT name, step, value FROM
              (SELECT *, row_number() OVER (PARTITION BY name ORDER BY step) AS n FROM s)
            WHERE n <= ? ORDER BY name, step""",
        [*name_params, *params, MAX_NONFINITE],
    ).fetchall()
    return _assemble(rows, bad, [] if by_layer else [default])


def _assemble(
    rows: list[tuple[Any, ...]], bad: list[tuple[Any, ...]], always: list[str]
) -> list[Series]:
    points: dict[str, list[tuple[Any, ...]]] = {name: [] for name in always}
    for name, _bucket, step, n, mean, low, high in rows:
        points.setdefault(name, []).append((step, mean, low, high, n))
    nonfinite: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in bad:
        nonfinite.setdefault(name, []).append((int(step), float(value)))
        points.setdefault(name, [])
    out = []
    for name, pts in points.items():
        finite = [p for p in pts if p[1] is not None]
        out.append(
            Series(
                name=name,
                steps=tuple(float(p[0]) for p in finite),
                mean=tuple(float(p[1]) for p in finite),
                low=tuple(float(p[2]) for p in finite),
                high=tuple(float(p[3]) for p in finite),
                nonfinite=tuple(nonfinite.get(name, ())),
                count=sum(int(p[4]) for p in pts),
            )
        )
    return out


def run_roles(cur: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, str]:
    """The roles (`mon.roles(...)`) the health rules judged the run with (adversary → d_loss)."""
    rows = cur.execute("SELECT state FROM health_state WHERE run_id = ?", [run_id]).fetchall()
    if not rows:
        return {}
    roles = json.loads(rows[0][0]).get("roles") or {}  # json: the state may hold NaN
    return {str(k): str(v) for k, v in roles.items() if v}
