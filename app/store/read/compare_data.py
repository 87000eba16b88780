"""What the compare page overlays: several runs' scalar curves and their LCA per layer.

One bucketed query per run for all of its compared keys (not one per run and key), read as one
frozen value the page caches under the store's data version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from trainlight.app.store.read.queries import RunSummary, list_runs
from trainlight.app.store.read.series import Series, layer_totals, metric_series, scalar_keys

MAX_KEYS = 12


@dataclass(frozen=True, eq=False)
class CompareData:
    runs: tuple[RunSummary, ...]  # the compared runs the store knows, in the URL's order
    missing: tuple[str, ...]  # ids it does not know
    keys: tuple[str, ...]  # the overlaid scalar keys (the first MAX_KEYS of all runs' keys)
    series: dict[str, dict[str, Series]]  # run_id -> key -> series
    lca_totals: dict[str, dict[str, float]]  # run_id -> layer -> cumulative LCA


def load_compare(
    cur: duckdb.DuckDBPyConnection, run_ids: tuple[str, ...], now: datetime
) -> CompareData:
    known = {r.run_id: r for r in list_runs(cur, now, run_ids=run_ids)} if run_ids else {}
    runs = tuple(known[r] for r in run_ids if r in known)
    keys = tuple(sorted({k for r in runs for k in scalar_keys(cur, r.run_id)})[:MAX_KEYS])
    return CompareData(
        runs=runs,
        missing=tuple(r for r in run_ids if r not in known),
        keys=keys,
        series={r.run_id: metric_series(cur, r.run_id, keys) for r in runs},
        lca_totals={r.run_id: layer_totals(cur, r.run_id, "lca") for r in runs},
    )
