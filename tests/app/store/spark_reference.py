"""The grid's sparkline query before ingest kept buckets: a full scan of `metrics`.

Kept as the brute-force reference the bucket tables are checked against (they must draw the same
shape): main key `loss` if logged, else the first non-reserved key by rowid; `points` step
buckets over the key's step span, mean per bucket.
"""

from __future__ import annotations

import duckdb

RESERVED_PREFIXES = ("runaway/", "catch/", "lca/")

_OLD_SPARKLINES = f"""
WITH candidates AS (
    SELECT run_id, key, rowid AS rid, step, value FROM metrics
    WHERE NOT ({" OR ".join("starts_with(key, ?)" for _ in RESERVED_PREFIXES)})
), main AS (
    SELECT run_id,
           CASE WHEN bool_or(key = ?) THEN ? ELSE arg_min(key, rid) END AS key
    FROM candidates GROUP BY run_id
), series AS (
    SELECT c.run_id, c.key, c.step, c.value FROM candidates c JOIN main USING (run_id, key)
), span AS (
    SELECT run_id, min(step) AS lo, max(step) AS hi FROM series GROUP BY run_id
)
SELECT s.run_id, s.key, (s.step - span.lo) * ? // (span.hi - span.lo + 1) AS bucket,
       avg(s.value) AS value
FROM series s JOIN span USING (run_id)
GROUP BY s.run_id, s.key, bucket
ORDER BY s.run_id, bucket
"""


def old_sparklines(
    cur: duckdb.DuckDBPyConnection, points: int = 60
) -> dict[str, tuple[str, list[float]]]:
    """run_id -> (main key, bucket means in step order), exactly as the old grid query gave."""
    params = [*RESERVED_PREFIXES, "loss", "loss", points]
    out: dict[str, tuple[str, list[float]]] = {}
    for run_id, key, _bucket, value in cur.execute(_OLD_SPARKLINES, params).fetchall():
        out.setdefault(run_id, (key, []))[1].append(value)
    return out
