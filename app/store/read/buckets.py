"""Long series downsampled in SQL into step buckets aligned to "nice" widths.

A series of any length comes back as at most `buckets` points per key (and layer): each bucket's
mean step, the mean, min and max of its finite values (the min/max envelope keeps one-step
spikes a stride would skip), their sum (for running totals), and its first non-finite value,
because NaN and ±Inf are data (STYLE rule 7) and must be drawn, not averaged away.

Buckets are `[k·w, (k+1)·w)` for a width `w` from the 1-2-5 series, anchored at step 0 rather
than at the series' first step. So while a live run grows, every bucket but the last keeps its
exact value and only the tail of a series changes: the run page can patch the end of a curve
instead of resending it (`figures/patching.py`). The width only steps up when the range outgrows
`buckets` buckets, and then, once, everything is redrawn.

One query computes the extents (to pick each key's width), one the buckets of every requested
key at once: a page with a dozen curves costs two round trips, not two dozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
NICE_STEPS = (1, 2, 5)


@dataclass(frozen=True)
class StepRange:
    """Inclusive step bounds; None means open on that side."""

    start: int | None = None
    end: int | None = None


@dataclass(frozen=True, eq=False)
class Series:
    """One downsampled series: x = mean step of each bucket, mean/low/high of its finite values.

    `nonfinite` holds the first NaN/±Inf (step, value) of every bucket that has one, so a run
    that goes NaN for good gets one cross per bucket, never a million.
    """

    name: str
    steps: FloatArray
    mean: FloatArray
    low: FloatArray
    high: FloatArray
    nonfinite: tuple[tuple[int, float], ...] = ()
    count: int = 0  # rows behind the series (before downsampling)
    downsampled: bool = False  # some bucket holds several rows: mean, low and high differ


def bucket_width(first: int, last: int, buckets: int) -> int:
    """The smallest 1-2-5 width whose aligned buckets cover [first, last] in <= `buckets`."""
    if buckets < 2:
        raise ValueError(f"buckets must be >= 2, got {buckets}")
    scale = 1
    while True:
        for nice in NICE_STEPS:
            width = nice * scale
            if last // width - first // width + 1 <= buckets:
                return width
        scale *= 10


def span_clauses(span: StepRange, column: str = "step") -> tuple[str, list[Any]]:
    """` AND step >= ? AND step <= ?` for the bounds that are set, with their parameters."""
    sql, params = "", list[Any]()
    if span.start is not None:
        sql, params = sql + f" AND {column} >= ?", [*params, span.start]
    if span.end is not None:
        sql, params = sql + f" AND {column} <= ?", [*params, span.end]
    return sql, params


_WIDTHS = "WITH w AS (SELECT unnest(?::VARCHAR[]) AS key, unnest(?::BIGINT[]) AS width)"
_FINITE_SQL = """{widths}
SELECT t.key, {layer} AS layer, floor(t.step / w.width)::BIGINT AS bucket,
       avg(t.step)::DOUBLE AS step, count(*) AS n, avg(t.value) AS mean, min(t.value) AS low,
       max(t.value) AS high{extra}
FROM {table} t JOIN w ON t.key = w.key
WHERE t.run_id = ? AND isfinite(t.value){span}
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
_NONFINITE_SQL = """{widths}
SELECT t.key, {layer} AS layer, min(t.step) AS step, arg_min(t.value, t.step) AS value,
       count(*) AS n{extra}
FROM {table} t JOIN w ON t.key = w.key
WHERE t.run_id = ? AND NOT isfinite(t.value){span}
GROUP BY t.key, layer, floor(t.step / w.width) ORDER BY 1, 2, 3"""
_LAYER_EXTRA = ", sum(t.value) AS total, min(t.rowid) AS first_row"


@dataclass(frozen=True, eq=False)
class Buckets:
    """One series' buckets as the queries returned them (numpy arrays, in step order)."""

    key: str
    layer: str  # "" for `metrics`
    step: FloatArray
    n: npt.NDArray[np.int64]
    mean: FloatArray
    low: FloatArray
    high: FloatArray
    total: FloatArray  # sum of the finite values (layer_metrics only; zeros otherwise)
    nonfinite: tuple[tuple[int, float], ...]  # first NaN/±Inf of each bucket holding one
    nonfinite_rows: int
    first_row: int  # where the series was first written: layers come in model order


def bucketed(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    run_id: str,
    keys: Sequence[str],
    span: StepRange,
    buckets: int,
) -> list[Buckets]:
    """The buckets of every series of `keys` in `span` (`table` is `metrics` or
    `layer_metrics`), sorted by key, then layers in model order."""
    if not keys:
        return []
    where, params = span_clauses(span)
    extents = cur.execute(
        f"""SELECT key, min(step), max(step), count(*) FILTER (WHERE NOT isfinite(value))
            FROM {table} WHERE run_id = ? AND list_contains(?, key){where} GROUP BY key""",
        [run_id, list(keys), *params],
    ).fetchall()
    if not extents:
        return []
    widths = {key: bucket_width(int(lo), int(hi), buckets) for key, lo, hi, _ in extents}
    layers = table == "layer_metrics"
    parts = {
        "widths": _WIDTHS,
        "layer": "t.layer" if layers else "''",
        "table": table,
        "span": span_clauses(span, "t.step")[0],
    }
    finite = cur.execute(
        _FINITE_SQL.format(**parts, extra=_LAYER_EXTRA if layers else ""),
        [list(widths), list(widths.values()), run_id, *params],
    ).fetchnumpy()
    bad_keys = [key for key, _, _, n_bad in extents if n_bad]  # usually none: skip the scan
    bad = (
        cur.execute(
            _NONFINITE_SQL.format(**parts, extra=", min(t.rowid) AS first_row" if layers else ""),
            [bad_keys, [widths[k] for k in bad_keys], run_id, *params],
        ).fetchall()
        if bad_keys
        else []
    )
    return _assemble(finite, bad)


def _assemble(finite: dict[str, Any], bad: list[tuple[Any, ...]]) -> list[Buckets]:
    nonfinite: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in bad:
        nonfinite.setdefault((row[0], row[1]), []).append(row[2:])
    columns = {name: np.asarray(values) for name, values in finite.items()}
    found = {
        name: {col: values[a:b] for col, values in columns.items()}
        for name, (a, b) in _runs(columns).items()
    }
    out = []
    for name in sorted(set(found) | set(nonfinite)):
        cols = found.get(name)
        errs = nonfinite.get(name, [])
        rows = [int(cols["first_row"].min())] if cols is not None and "first_row" in cols else []
        rows += [int(e[3]) for e in errs if len(e) > 3]
        if cols is None:
            cols = {k: v[:0] for k, v in columns.items()}
        n = len(cols["step"])
        out.append(
            Buckets(
                key=name[0],
                layer=name[1],
                step=cols["step"].astype(np.float64),
                n=cols["n"].astype(np.int64),
                mean=cols["mean"].astype(np.float64),
                low=cols["low"].astype(np.float64),
                high=cols["high"].astype(np.float64),
                total=cols["total"].astype(np.float64) if "total" in cols else np.zeros(n),
                nonfinite=tuple((int(e[0]), float(e[1])) for e in errs),
                nonfinite_rows=sum(int(e[2]) for e in errs),
                first_row=min(rows, default=0),
            )
        )
    out.sort(key=lambda b: (b.key, b.first_row))
    return out


def _runs(columns: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int]]:
    """(key, layer) -> the [start, end) rows it holds in the sorted result."""
    keys, layers = columns["key"], columns["layer"]
    if not len(keys):
        return {}
    change = (keys[1:] != keys[:-1]) | (layers[1:] != layers[:-1])
    starts = [0, *(np.flatnonzero(change) + 1).tolist()]
    ends = [*starts[1:], len(keys)]
    return {(str(keys[a]), str(layers[a])): (a, b) for a, b in zip(starts, ends, strict=True)}


def to_series(buckets: Buckets, running_from: float | None = None) -> Series:
    """The Series a figure draws, named by layer (or key); with `running_from`, the running
    total instead (cumulative LCA: `running_from` plus the finite values summed to the end of
    each bucket, so the last point is exactly the series' total)."""
    if running_from is None:
        mean, low, high = buckets.mean, buckets.low, buckets.high
    else:
        mean = low = high = running_from + np.cumsum(buckets.total)
    return Series(
        name=buckets.layer or buckets.key,
        steps=buckets.step,
        mean=mean,
        low=low,
        high=high,
        nonfinite=buckets.nonfinite,
        count=int(buckets.n.sum()) + buckets.nonfinite_rows,
        downsampled=bool((buckets.n > 1).any()),
    )
