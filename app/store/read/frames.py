"""LCA heatmap frames as the heatmap page needs them: steps per layer, one frame, a colour scale.

Frames are already thinned by the collector and the store (see collectors/signals/lca_frames.py),
so a layer holds at most a few hundred; one frame (≤ 64×64 floats) is fetched per animation tick
rather than sending the whole animation up front. The colour scale is the 99th percentile of
|LCA| over all of a layer's frames, so every frame of the animation shares one scale and a
single outlier cell does not wash the rest out.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt

SCALE_QUANTILE = 0.99


@dataclass(frozen=True, eq=False)
class LcaFrame:
    """One pooled LCA picture of a layer's weight: row-major `values`, n_rows × n_cols."""

    layer: str
    step: int
    n_rows: int
    n_cols: int
    values: npt.NDArray[np.float32]  # as stored: FLOAT

    def grid(self) -> npt.NDArray[np.float32]:
        """The values as an n_rows × n_cols array."""
        return self.values.reshape(self.n_rows, self.n_cols)

    def rows(self) -> list[list[float]]:
        rows: list[list[float]] = self.grid().tolist()
        return rows


def frame_layers(cur: duckdb.DuckDBPyConnection, run_id: str) -> tuple[str, ...]:
    """Layers with frames, in the order they were first written (model order)."""
    rows = cur.execute(
        "SELECT layer FROM lca_frames WHERE run_id = ? GROUP BY layer ORDER BY min(rowid)",
        [run_id],
    ).fetchall()
    return tuple(layer for (layer,) in rows)


def frame_steps(cur: duckdb.DuckDBPyConnection, run_id: str, layer: str) -> tuple[int, ...]:
    rows = cur.execute(
        "SELECT DISTINCT step FROM lca_frames WHERE run_id = ? AND layer = ? ORDER BY step",
        [run_id, layer],
    ).fetchall()
    return tuple(int(step) for (step,) in rows)


def lca_frame(
    cur: duckdb.DuckDBPyConnection, run_id: str, layer: str, step: int
) -> LcaFrame | None:
    """The layer's frame at `step`, or the nearest one (earlier wins a tie); None if none."""
    row = cur.execute(
        """SELECT step, n_rows, n_cols, "values" FROM lca_frames
           WHERE run_id = ? AND layer = ? ORDER BY abs(step - ?), step LIMIT 1""",
        [run_id, layer, step],
    ).fetchone()
    if row is None:
        return None
    values = np.asarray(row[3], dtype=np.float32)
    return LcaFrame(layer, int(row[0]), int(row[1]), int(row[2]), values)


def frames_at(cur: duckdb.DuckDBPyConnection, run_id: str, step: int) -> tuple[LcaFrame, ...]:
    """Every layer's frame nearest to `step`, in model order (the side-by-side view)."""
    frames = (lca_frame(cur, run_id, layer, step) for layer in frame_layers(cur, run_id))
    return tuple(f for f in frames if f is not None)


def frame_scale(cur: duckdb.DuckDBPyConnection, run_id: str, layer: str) -> float:
    """99th percentile of |LCA| over the finite cells of all of the layer's frames (0 if none)."""
    row = cur.execute(
        """SELECT quantile_cont(abs(v), ?) FROM
             (SELECT unnest("values") AS v FROM lca_frames WHERE run_id = ? AND layer = ?)
           WHERE isfinite(v)""",
        [SCALE_QUANTILE, run_id, layer],
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0
