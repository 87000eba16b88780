"""Main-loss sparklines kept up to date at ingest, so the grid never scans `metrics`.

The grid draws each run's main loss as at most `SPARK_POINTS` bucket means. Computed from
`metrics` at read time that is a scan of every row of the store (2.7 s at 50M rows) each time
the data version changes, i.e. after every ingested segment. So ingest keeps, in its own
transaction, a summary that only ever holds a few hundred rows per run:

- `spark_runs(run_id, key, width)`: the run's main-loss key and the bucket width in steps, a
  power of two;
- `spark_buckets(run_id, bucket, n, total)`: for `bucket = floor(step / width)`, how many values
  of that key the bucket holds and their sum.

A run's buckets never span more than `STORED_BUCKETS`; when a batch widens the step range past
that, the width doubles (pairs of buckets merge: counts and sums add) until it fits. The width is
thus the smallest power of two that fits all the run's steps, and the buckets depend only on the
rows, never on how they were batched into segments. The grid regroups the stored buckets into
`SPARK_POINTS` even slots exactly as the old query grouped steps (`STORED_BUCKETS` is
`4 * SPARK_POINTS`, so a slot's edges move by less than half a slot; runs of up to
`STORED_BUCKETS` steps draw exactly as before). Count and sum, not min/max: the mean per bucket
is what the grid has always drawn, and a NaN or ±Inf makes the sum non-finite, so those alarms
stay visible.

The main loss is the key the run's `loss` role names (`mon.roles(loss=...)`, `loss` by default)
once the run logged it, else the first non-reserved key the run logged (insertion order): the
key the `spike` rule judges, when there is one. Schema migration v4
(`collectors/schema.py`) backfills both tables for stores written before they existed.

An ingest batch holds many runs: their new buckets are added with one upsert (counts and sums
add on conflict), and only runs whose main key changes or whose width grows rewrite theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import duckdb
import numpy as np
import pyarrow as pa

from trainlight.app.store.ingest.registered import registered
from trainlight.collectors.schema import RESERVED_PREFIXES
from trainlight.collectors.wire import LOSS

SPARK_POINTS = 60
STORED_BUCKETS = 4 * SPARK_POINTS  # the migration's backfill has this number written in
MAIN_LOSS_KEY = LOSS  # the wire name the `spike` rule reads too
# Keys trainlight itself writes into `metrics` (RESERVED_PREFIXES) are never a run's "main loss".
_CANDIDATE = "\"table\" = 'metrics' AND NOT ({})".format(
    " OR ".join(f"starts_with(CAST(key AS VARCHAR), '{p}')" for p in RESERVED_PREFIXES)
)


@dataclass(frozen=True)
class Bucket:
    """How many values of the main loss fell in a bucket, and their sum (NaN/±Inf propagate)."""

    n: int
    total: float


@dataclass(frozen=True)
class Sparkline:
    """A run's main-loss key and its bucket means in step order."""

    key: str
    values: tuple[float, ...]


def fit_width(width: int, lo_step: int, hi_step: int, cap: int = STORED_BUCKETS) -> int:
    """The smallest power-of-two multiple of `width` whose buckets span `lo_step..hi_step` in
    at most `cap` buckets (`width` is already a power of two)."""
    if width < 1 or width & (width - 1):
        raise ValueError(f"width must be a power of two, got {width}")
    if cap < 2:
        raise ValueError(f"cap must be >= 2, got {cap}")
    while hi_step // width - lo_step // width >= cap:
        width *= 2
    return width


def merge_buckets(
    old: Mapping[int, Bucket], factor: int, new: Iterable[tuple[int, Bucket]]
) -> dict[int, Bucket]:
    """`old` regrouped `factor` buckets into one (its width grew by `factor`) plus `new`."""
    merged: dict[int, Bucket] = {}
    for bucket, add in [*((b // factor, v) for b, v in old.items()), *new]:
        have = merged.get(bucket)
        merged[bucket] = add if have is None else Bucket(have.n + add.n, have.total + add.total)
    return merged


# Per run of the batch with a candidate key: its main key after the batch (the key its `loss`
# role names, `loss` by default, once seen; else the key it had; else the first candidate in the
# batch by position), the stored key and width, the main key's step span in the batch, and the
# stored buckets' span when they stay. `spark_roles(run_id, main_key)` holds the runs of the
# batch whose headers name a `loss` role.
_PLAN = f"""
WITH seen AS (
    SELECT CAST(b.run_id AS VARCHAR) AS run_id,
           any_value(coalesce(ro.main_key, '{MAIN_LOSS_KEY}')) AS main_key,
           bool_or(b.key = coalesce(ro.main_key, '{MAIN_LOSS_KEY}')) AS has_main,
           arg_min(CAST(b.key AS VARCHAR), b.ord) AS first_key
    FROM batch b LEFT JOIN spark_roles ro ON CAST(b.run_id AS VARCHAR) = ro.run_id
    WHERE {_CANDIDATE} AND b.key IS NOT NULL GROUP BY 1
), main AS (
    SELECT s.run_id, r.key AS old_key, r.width AS old_width,
           CASE WHEN r.key = s.main_key OR s.has_main THEN s.main_key
                ELSE coalesce(r.key, s.first_key) END AS key
    FROM seen s LEFT JOIN spark_runs r USING (run_id)
), span AS (
    SELECT m.run_id, min(b.step) AS lo, max(b.step) AS hi
    FROM batch b JOIN main m ON CAST(b.run_id AS VARCHAR) = m.run_id
                            AND CAST(b.key AS VARCHAR) = m.key
    WHERE b."table" = 'metrics' GROUP BY 1
), stored AS (
    SELECT run_id, min(bucket) AS lo, max(bucket) AS hi FROM spark_buckets
    WHERE run_id IN (SELECT run_id FROM main WHERE key = old_key) GROUP BY 1
)
SELECT m.run_id, m.key, m.old_key, m.old_width, span.lo, span.hi, stored.lo, stored.hi
FROM main m JOIN span USING (run_id) LEFT JOIN stored USING (run_id)
"""

# Adds the batch's main-key rows to their (already regrouped) buckets: counts and sums add.
_ADD = """
INSERT INTO spark_buckets
SELECT p.run_id, CAST(floor(b.step / p.width) AS BIGINT) AS bucket, count(b.value),
       coalesce(sum(b.value), 0)
FROM batch b JOIN spark_plan p ON CAST(b.run_id AS VARCHAR) = p.run_id
                              AND CAST(b.key AS VARCHAR) = p.key
WHERE b."table" = 'metrics'
GROUP BY ALL
ON CONFLICT (run_id, bucket) DO UPDATE
SET n = spark_buckets.n + excluded.n, total = spark_buckets.total + excluded.total
"""


@dataclass(frozen=True)
class _Plan:
    """What a batch does to one run's sparkline."""

    run_id: str
    key: str
    width: int  # after the batch
    reset: bool  # the main key changed: the stored buckets are dropped
    factor: int  # the stored buckets merge `factor` into one (1: unchanged)


def update_sparklines(cur: duckdb.DuckDBPyConnection, main_keys: Mapping[str, str]) -> None:
    """Fold the batch registered as `batch` (inside ingest's transaction) into every run's
    buckets: three statements for the whole batch, plus two for the runs whose key changed or
    whose width grew (each run's width doubles a few dozen times in its life at most).
    `main_keys`: run id -> the key its `loss` role names, for the runs that name one."""
    roles = pa.table(
        {
            "run_id": pa.array(list(main_keys), pa.string()),
            "main_key": pa.array(list(main_keys.values()), pa.string()),
        }
    )
    with registered(cur, "spark_roles", roles):
        plans = [_plan(row) for row in cur.execute(_PLAN).fetchall()]
    if not plans:
        return
    dropped = [p.run_id for p in plans if p.reset or p.factor > 1]
    regrouped = _regrouped(cur, [p for p in plans if p.factor > 1])
    if dropped:
        cur.execute("DELETE FROM spark_buckets WHERE run_id IN (SELECT unnest(?))", [dropped])
    if regrouped:
        cur.execute(
            """INSERT INTO spark_buckets
               SELECT unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]),
                      unnest(?::DOUBLE[])""",
            [list(column) for column in zip(*regrouped, strict=True)],
        )
    widths = pa.table(
        {
            "run_id": pa.array([p.run_id for p in plans], pa.string()),
            "key": pa.array([p.key for p in plans], pa.string()),
            "width": pa.array([p.width for p in plans], pa.int64()),
        }
    )
    with registered(cur, "spark_plan", widths):
        cur.execute(_ADD)
        cur.execute(
            """INSERT INTO spark_runs SELECT run_id, key, width FROM spark_plan
               ON CONFLICT (run_id) DO UPDATE SET key = excluded.key, width = excluded.width"""
        )


def _plan(row: tuple[Any, ...]) -> _Plan:
    run_id, key, old_key, old_width, lo, hi, stored_lo, stored_hi = row
    reset = key != old_key
    width = 1 if reset or old_width is None else int(old_width)
    lo, hi = int(lo), int(hi)
    if not reset and stored_lo is not None:
        lo, hi = min(lo, int(stored_lo) * width), max(hi, int(stored_hi) * width)
    wider = fit_width(width, lo, hi)
    return _Plan(str(run_id), str(key), wider, reset, 1 if reset else wider // width)


def _regrouped(
    cur: duckdb.DuckDBPyConnection, plans: Sequence[_Plan]
) -> list[tuple[str, int, int, float]]:
    """The stored buckets of runs whose width grows, merged to the new width."""
    if not plans:
        return []
    factors = {p.run_id: p.factor for p in plans}
    stored: dict[str, dict[int, Bucket]] = {run_id: {} for run_id in factors}
    for run_id, bucket, n, total in cur.execute(
        "SELECT run_id, bucket, n, total FROM spark_buckets WHERE run_id IN (SELECT unnest(?))",
        [list(factors)],
    ).fetchall():
        stored[run_id][int(bucket)] = Bucket(int(n), float(total))
    out = []
    for run_id, buckets in stored.items():
        for bucket, merged in merge_buckets(buckets, factors[run_id], ()).items():
            out.append((run_id, bucket, merged.n, merged.total))
    return out


# Stored buckets regrouped into `points` slots the way the old query grouped steps: slot =
# (bucket - first) * points // span. Empty buckets (only NULL values) draw nothing.
_READ = """
WITH span AS (
    SELECT run_id, min(bucket) AS lo, max(bucket) AS hi FROM spark_buckets GROUP BY run_id
)
SELECT b.run_id, r.key, (b.bucket - span.lo) * ? // (span.hi - span.lo + 1) AS slot,
       sum(b.total) / sum(b.n) AS value
FROM spark_buckets b JOIN span USING (run_id) JOIN spark_runs r USING (run_id)
WHERE b.n > 0
GROUP BY b.run_id, r.key, slot
ORDER BY b.run_id, slot
"""


def read_sparklines(
    cur: duckdb.DuckDBPyConnection, points: int = SPARK_POINTS
) -> dict[str, Sparkline]:
    """Every run's main-loss sparkline: at most `points` bucket means, in step order."""
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    # ~60k rows for 1,000 runs: columns through numpy convert in a third of fetchall's time.
    found = cur.execute(_READ, [points]).fetchnumpy()
    ids, keys = found["run_id"], found["key"]
    values = cast(list[float], found["value"].tolist())
    if not len(ids):
        return {}
    starts = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist()]
    ends = [*starts[1:], len(ids)]
    return {
        str(ids[a]): Sparkline(str(keys[a]), tuple(values[a:b]))
        for a, b in zip(starts, ends, strict=True)
    }
