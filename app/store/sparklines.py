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

The main loss is `loss` if the run logged it, else the first non-reserved key the run logged
(insertion order): the rule the grid has always used. Schema migration v4
(`collectors/schema.py`) backfills both tables for stores written before they existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import duckdb
import numpy as np

SPARK_POINTS = 60
STORED_BUCKETS = 4 * SPARK_POINTS  # the migration's backfill has this number written in
MAIN_LOSS_KEY = "loss"
# Keys trainlight itself writes into `metrics`: never the "main loss" of a run.
RESERVED_PREFIXES = ("runaway/", "catch/", "lca/")

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


def update_sparkline(cur: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Fold the batch registered as `segment` (inside ingest's transaction) into the run's
    buckets; costs one pass over the batch and a few hundred rows of `spark_buckets`."""
    found = cur.execute("SELECT key, width FROM spark_runs WHERE run_id = ?", [run_id]).fetchone()
    key, width = (found[0], int(found[1])) if found else (None, 1)
    main = _main_key(cur, key)
    if main is None:
        return
    if main != key:  # first sight of a main key, or `loss` replacing a fallback key
        cur.execute("DELETE FROM spark_buckets WHERE run_id = ?", [run_id])
        width = 1
    span = cur.execute(
        f"SELECT min(step), max(step) FROM segment WHERE {_CANDIDATE} AND key = ?", [main]
    ).fetchone()
    if span is None or span[0] is None:
        return
    old = _stored(cur, run_id)
    lo, hi = int(span[0]), int(span[1])
    if old:
        lo, hi = min(lo, min(old) * width), max(hi, max(old) * width)
    wider = fit_width(width, lo, hi)
    new = cur.execute(
        f"""SELECT CAST(floor(step / ?) AS BIGINT) AS bucket, count(value),
                   coalesce(sum(value), 0)
            FROM segment WHERE {_CANDIDATE} AND key = ? GROUP BY bucket""",
        [wider, main],
    ).fetchall()
    merged = merge_buckets(old, wider // width, ((b, Bucket(n, t)) for b, n, t in new))
    _store(cur, run_id, main, wider, merged)


def _main_key(cur: duckdb.DuckDBPyConnection, current: str | None) -> str | None:
    """The run's main key after this batch: `loss` once seen, else the first key ever seen."""
    if current == MAIN_LOSS_KEY:
        return current
    (has_loss,) = cur.execute(
        f"SELECT count(*) > 0 FROM segment WHERE {_CANDIDATE} AND key = ?", [MAIN_LOSS_KEY]
    ).fetchone() or (False,)
    if has_loss:
        return MAIN_LOSS_KEY
    if current is not None:
        return current
    # No ORDER BY: DuckDB preserves insertion order, the order `metrics` got its rowids in.
    first = cur.execute(
        f"SELECT CAST(key AS VARCHAR) FROM segment WHERE {_CANDIDATE} AND key IS NOT NULL LIMIT 1"
    ).fetchone()
    return None if first is None else str(first[0])


def _stored(cur: duckdb.DuckDBPyConnection, run_id: str) -> dict[int, Bucket]:
    rows = cur.execute(
        "SELECT bucket, n, total FROM spark_buckets WHERE run_id = ?", [run_id]
    ).fetchall()
    return {int(b): Bucket(int(n), float(t)) for b, n, t in rows}


def _store(
    cur: duckdb.DuckDBPyConnection, run_id: str, key: str, width: int, buckets: dict[int, Bucket]
) -> None:
    cur.execute("DELETE FROM spark_buckets WHERE run_id = ?", [run_id])
    order = sorted(buckets)
    cur.execute(
        """INSERT INTO spark_buckets
           SELECT ?, unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::DOUBLE[])""",
        [run_id, order, [buckets[b].n for b in order], [buckets[b].total for b in order]],
    )
    cur.execute(
        """INSERT INTO spark_runs VALUES (?, ?, ?)
           ON CONFLICT (run_id) DO UPDATE SET key = excluded.key, width = excluded.width""",
        [run_id, key, width],
    )


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
