"""A run's loss-surface slices over training, as the run page animates them.

Each `landscape/slice` row is the probe loss at α = -span … span (odd `points`, evenly spaced)
along the run's direction, filter-normalised to the weights of that step; `landscape/span` and
`landscape/points` (logged once) rebuild the α axis, exactly as the collector's `alphas_for`
spaced it. Sharpness (curvature at α = 0) comes as its own metric. A long run is thinned to
`MAX_FRAMES` slices, the latest always kept.
`landscape/seed` (logged once too) names the run's direction, so `trainlight landscape` can
rebuild it at a checkpoint (`recorded_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt

from trainlight.app.store.read.arrays import (
    POINTS_KEY,
    SEED_KEY,
    SHARPNESS_KEY,
    SLICE_KEY,
    SPAN_KEY,
    read_arrays,
)
from trainlight.app.store.read.replicas import thin

MAX_FRAMES = 120


@dataclass(frozen=True)
class LandscapeSlices:
    """`losses[i]` is the slice at `steps[i]`, over `alphas` (NaN kept); sharpness per step."""

    steps: tuple[int, ...]
    alphas: tuple[float, ...]
    losses: npt.NDArray[np.float64]
    sharpness_steps: tuple[int, ...]
    sharpness: tuple[float, ...]


@dataclass(frozen=True)
class SliceSettings:
    """What a run's slices were taken with; None where the run recorded no such value."""

    seed: int | None
    span: float | None
    points: int | None

    def over(self, other: SliceSettings) -> SliceSettings:
        """These values where set, `other`'s elsewhere."""
        return SliceSettings(
            self.seed if self.seed is not None else other.seed,
            self.span if self.span is not None else other.span,
            self.points if self.points is not None else other.points,
        )

    def missing(self) -> list[str]:
        """The command-line options of the values not set."""
        values = {"--seed": self.seed, "--span": self.span, "--points": self.points}
        return [option for option, value in values.items() if value is None]


def recorded_settings(cur: duckdb.DuckDBPyConnection, run_id: str) -> SliceSettings:
    """The seed, span and points the run's `mon.landscape` logged (once, at its first slice)."""
    found = dict(
        cur.execute(
            "SELECT key, any_value(value) FROM metrics WHERE run_id = ? AND key IN (?, ?, ?) "
            "AND isfinite(value) GROUP BY key",
            [run_id, SEED_KEY, SPAN_KEY, POINTS_KEY],
        ).fetchall()
    )
    seed, span, points = (found.get(key) for key in (SEED_KEY, SPAN_KEY, POINTS_KEY))
    return SliceSettings(
        seed=None if seed is None else int(seed),
        span=None if span is None else float(span),
        points=None if points is None else int(points),
    )


def slice_alphas(points: int, span: float) -> tuple[float, ...]:
    """`points` evenly spaced offsets in [-span, span] (the collector's spacing)."""
    if points < 2:
        return (0.0,) * points
    half = (points - 1) / 2
    return tuple(span * (i - half) / half for i in range(points))


def landscape_slices(
    cur: duckdb.DuckDBPyConnection, run_id: str, limit: int = MAX_FRAMES
) -> LandscapeSlices | None:
    """The run's slices (only those with the run's point count), or None when it has none."""
    steps = [
        int(r[0])
        for r in cur.execute(
            "SELECT DISTINCT step FROM arrays WHERE run_id = ? AND key = ? ORDER BY step",
            [run_id, SLICE_KEY],
        ).fetchall()
    ]
    rows = read_arrays(cur, run_id, SLICE_KEY, thin(steps, limit))
    if not rows:
        return None
    described = dict(
        cur.execute(
            "SELECT key, any_value(value) FROM metrics WHERE run_id = ? AND key IN (?, ?) "
            "GROUP BY key",
            [run_id, SPAN_KEY, POINTS_KEY],
        ).fetchall()
    )
    points = int(described.get(POINTS_KEY) or rows[-1].matrix.size)
    span = float(described.get(SPAN_KEY) or 1.0)
    kept = [r for r in rows if r.matrix.size == points]
    sharp = cur.execute(
        "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step",
        [run_id, SHARPNESS_KEY],
    ).fetchall()
    return LandscapeSlices(
        steps=tuple(r.step for r in kept),
        alphas=slice_alphas(points, span),
        losses=np.array([r.matrix.reshape(-1) for r in kept], dtype=np.float64).reshape(
            len(kept), points
        ),
        sharpness_steps=tuple(int(s) for s, _ in sharp),
        sharpness=tuple(float(v) for _, v in sharp),
    )
