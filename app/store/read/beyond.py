"""What the run page's "beyond the badges" section shows: replicas, landscape, layer sizing.

One read of everything the three panels need, so the page caches it once per data version
(`app/pages/run.py`). Each part is empty when the run did not record it, and its panel is left
out. The 2-D surface is a file, not a table: the page reads it beside this (store/read/surfaces.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from trainlight.app.store.read.landscape import LandscapeSlices, landscape_slices
from trainlight.app.store.read.layer_sizing import LayerHistogram, variance_histograms
from trainlight.app.store.read.replicas import ReplicaSeries, replica_differences
from trainlight.app.store.read.series import run_judging


@dataclass(frozen=True)
class BeyondData:
    replicas: tuple[ReplicaSeries, ...]
    repro_budget: float
    slices: LandscapeSlices | None
    histograms: tuple[LayerHistogram, ...]


def load_beyond(cur: duckdb.DuckDBPyConnection, run_id: str) -> BeyondData:
    return BeyondData(
        replicas=replica_differences(cur, run_id),
        repro_budget=run_judging(cur, run_id).settings.repro_budget,
        slices=landscape_slices(cur, run_id),
        histograms=variance_histograms(cur, run_id),
    )
