"""Reading the `arrays` table: small per-step matrices as numpy, never as Python lists.

A `predictions` row holds up to 4,096 × classes floats; fetching it as a list of Python floats
costs ~100× more than through Arrow. Every reader here goes through `_matrices`, which slices
the flat Arrow buffer by the list offsets and reshapes each row to (n_rows, n_cols).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

Matrix = npt.NDArray[np.float32]

# The keys the collectors write (collectors/signals/predictions.py, landscape_probe.py; the
# dashboard must not import those torch modules) and the histogram key of collectors/schema.py.
PREDICTIONS_KEY = "predictions"
LABELS_KEY = "predictions/labels"
SLICE_KEY = "landscape/slice"
SHARPNESS_KEY = "landscape/sharpness"
SPAN_KEY = "landscape/span"
POINTS_KEY = "landscape/points"
SEED_KEY = "landscape/seed"


@dataclass(frozen=True)
class StepMatrix:
    """One `arrays` row: the step, its layer ('' for run-level rows) and the matrix."""

    step: int
    layer: str
    matrix: Matrix


def read_arrays(
    cur: duckdb.DuckDBPyConnection,
    run_id: str,
    key: str,
    steps: Sequence[int] | None = None,
) -> list[StepMatrix]:
    """The run's rows of `key` in (step, layer) order, one per (step, layer) (the first
    ingested when a segment was delivered twice); only `steps` when given."""
    where = "" if steps is None else "AND list_contains(?, step)"
    params: list[object] = [run_id, key] + ([] if steps is None else [list(steps)])
    table = cur.sql(
        f"""SELECT step, coalesce(layer, '') AS layer, n_rows, n_cols, "values"
        FROM arrays WHERE run_id = ? AND key = ? {where}
        QUALIFY row_number() OVER (PARTITION BY step, coalesce(layer, '') ORDER BY rowid) = 1
        ORDER BY step, layer""",
        params=params,
    ).to_arrow_table()
    return _matrices(table)


def _matrices(table: pa.Table) -> list[StepMatrix]:
    if table.num_rows == 0:
        return []
    values = table.column("values").combine_chunks()
    flat = values.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    offsets = values.offsets.to_numpy()
    steps = table.column("step").to_pylist()
    layers = table.column("layer").to_pylist()
    rows = table.column("n_rows").to_pylist()
    cols = table.column("n_cols").to_pylist()
    out = []
    for i, (step, layer, n_rows, n_cols) in enumerate(zip(steps, layers, rows, cols, strict=True)):
        chunk = flat[offsets[i] : offsets[i + 1]]
        if values[i].is_valid and chunk.size == n_rows * n_cols:
            out.append(StepMatrix(int(step), str(layer), chunk.reshape(n_rows, n_cols)))
    return out
