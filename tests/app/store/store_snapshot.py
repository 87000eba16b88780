"""Everything ingest writes, read back in a canonical form, to compare two stores filled from the
same segments in different batchings (one per pass, one pass, small batches)."""

from __future__ import annotations

import math
from typing import Any

from trainlight.app.store.database import Store

# Per table: the columns that depend only on the data (not on when ingest ran), in an order
# that does not depend on how runs were interleaved across transactions.
QUERIES = {
    "runs": "SELECT * EXCLUDE (stop_requested, stop_reason) FROM runs ORDER BY run_id",
    "stops": "SELECT run_id, stop_requested, stop_reason FROM runs ORDER BY run_id",
    "metrics": "SELECT * FROM metrics ORDER BY ALL",
    "layer_metrics": "SELECT * FROM layer_metrics ORDER BY ALL",
    "lca_frames": "SELECT run_id, step, layer, n_rows, n_cols FROM lca_frames ORDER BY ALL",
    "latest": "SELECT * FROM latest ORDER BY ALL",
    "health": "SELECT run_id, signal, state, step, reason FROM health ORDER BY run_id, seq",
    "health_state": "SELECT * FROM health_state ORDER BY run_id",
    "segments": "SELECT run_id, seq, n_rows FROM segments ORDER BY ALL",
    "spark_runs": "SELECT * FROM spark_runs ORDER BY run_id",
    "spark_buckets": "SELECT * FROM spark_buckets ORDER BY run_id, bucket",
    "lca_layers": "SELECT run_id, layer FROM lca_layers ORDER BY run_id, ord",
}


def canonical(value: Any) -> Any:
    """Floats to 12 significant digits (sums may differ in the last bits with the order of
    addition), NaN as a string (NaN != NaN), containers element by element."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else float(f"{value:.12g}")
    if isinstance(value, (list, tuple)):
        return tuple(canonical(v) for v in value)
    return value


def snapshot(store: Store) -> dict[str, list[Any]]:
    with store.read() as cur:
        return {
            name: [canonical(row) for row in cur.execute(sql).fetchall()]
            for name, sql in QUERIES.items()
        }
