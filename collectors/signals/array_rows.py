"""Segment columns for `arrays` rows: one small float32 matrix per (step, key)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def array_rows(records: Sequence[tuple[int, str, npt.ArrayLike]]) -> dict[str, list[Any]]:
    """Columns of `arrays` rows for (step, key, matrix) records; a 1-D matrix is one row."""
    columns: dict[str, list[Any]] = {
        name: [] for name in ("table", "step", "key", "n_rows", "n_cols", "values")
    }
    for step, key, matrix in records:
        array = np.asarray(matrix, dtype=np.float32)
        rows, cols = (1, array.size) if array.ndim < 2 else array.shape[:2]
        for name, item in zip(
            columns, ("arrays", step, key, rows, cols, array.reshape(-1)), strict=True
        ):
            columns[name].append(item)
    return columns
