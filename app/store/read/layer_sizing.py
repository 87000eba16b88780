"""Per-layer histograms of unit activation variances over training ("is this layer too big?").

Each `act_var_hist` row (one per watched layer and window) counts the layer's units per
variance bin, with the bin edges of collectors/schema.py `VAR_HIST_LOG10`: bin 0 holds variances
below 10**edges[0] (dead and near-constant units), bin i holds [10**edges[i-1], 10**edges[i]),
the last bin everything from 10**edges[-1] up. A layer with many units in bin 0 carries units
that do nothing: the "oversized layer" hint, informational only (no verdict).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt

from trainlight.app.store.read.arrays import read_arrays
from trainlight.app.store.read.replicas import thin
from trainlight.collectors.schema import VAR_HIST_KEY, VAR_HIST_LOG10

MAX_WINDOWS = 300
BINS = len(VAR_HIST_LOG10) + 1


@dataclass(frozen=True)
class LayerHistogram:
    """`counts[i, b]`: units of `layer` in variance bin b in the window ending at `steps[i]`."""

    layer: str
    steps: tuple[int, ...]
    counts: npt.NDArray[np.float64]

    @property
    def near_zero(self) -> npt.NDArray[np.float64]:
        """Fraction of the counted units in the near-zero bin, per window (NaN: none counted)."""
        totals = self.counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, self.counts[:, 0] / totals, np.nan)


def bin_centres() -> tuple[float, ...]:
    """log10 of each bin's middle; the open-ended first and last bins get half a bin's width."""
    edges = VAR_HIST_LOG10
    width = edges[1] - edges[0]
    inner = [(lo + hi) / 2 for lo, hi in itertools.pairwise(edges)]
    return (edges[0] - width / 2, *inner, edges[-1] + width / 2)


def variance_histograms(
    cur: duckdb.DuckDBPyConnection, run_id: str, limit: int = MAX_WINDOWS
) -> tuple[LayerHistogram, ...]:
    """One histogram series per layer (layers in name order); rows with the wrong bin count
    (another trainlight's edges) are left out."""
    layers = cur.execute(
        """SELECT coalesce(layer, ''), list(DISTINCT step ORDER BY step) FROM arrays
        WHERE run_id = ? AND key = ? GROUP BY 1 ORDER BY 1""",
        [run_id, VAR_HIST_KEY],
    ).fetchall()
    wanted = sorted({s for _, steps in layers for s in thin(steps, limit)})
    by_layer: dict[str, list[tuple[int, npt.NDArray[np.float32]]]] = {}
    for row in read_arrays(cur, run_id, VAR_HIST_KEY, wanted):
        if row.matrix.size == BINS:
            by_layer.setdefault(row.layer, []).append((row.step, row.matrix.reshape(-1)))
    return tuple(
        LayerHistogram(
            layer,
            tuple(s for s, _ in rows),
            np.array([c for _, c in rows], dtype=np.float64),
        )
        for layer, rows in sorted(by_layer.items())
    )
