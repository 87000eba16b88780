"""Live refresh without resending figures: what a browser's copy of a figure lacks.

When a live run's page refreshes, most of each figure is what the browser already has: the
layout, the traces' styles, and every point but the last few (the buckets of `store/read/buckets.py`
are anchored, so only a curve's tail moves while a run grows). The page keeps a small `memo` per
figure in the browser (sizes and digests, no data) and, on refresh, `plan` compares the new
figure with it:

- nothing changed: send nothing;
- only data arrays (`x`, `y`, `text`) changed, and each either grew past what the browser has
  with its first n-1 points unchanged: patch the tail (`ArrayEdit` with `start`), or changed
  otherwise: replace that one array (`start` None);
- anything else (layout, styles, traces added or gone): send the whole figure.

Pure functions on plain data; the page turns a plan into a `dash.Patch`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from trainlight.app.figures.style import Figure

PATCHABLE = ("x", "y", "text")
Memo = dict[str, Any]  # JSON: {"frame": digest, "arrays": {"<trace>.<field>": [n, head, all]}}


@dataclass(frozen=True, eq=False)
class ArrayEdit:
    """Set `data[trace][field]`: from index `start` on, to `values` (None: the whole array)."""

    trace: int
    field: str
    start: int | None
    values: npt.NDArray[Any]


@dataclass(frozen=True, eq=False)
class FigurePlan:
    kind: Literal["same", "patch", "full"]
    edits: tuple[ArrayEdit, ...]
    memo: Memo  # what the browser will hold once the plan is applied


def memo(fig: Figure) -> Memo:
    """Sizes and digests of a figure's data arrays, and one digest of everything else."""
    arrays: dict[str, list[Any]] = {}
    for i, trace in enumerate(fig.get("data", [])):
        for field in PATCHABLE:
            if field in trace:
                values = _array(trace[field])
                n = len(values)
                arrays[f"{i}.{field}"] = [n, _digest(values[: max(n - 1, 0)]), _digest(values)]
    return {"frame": _frame_digest(fig), "arrays": arrays}


def plan(previous: Mapping[str, Any] | None, fig: Figure) -> FigurePlan:
    """How to bring the browser's copy (summarised by `previous`) up to `fig`."""
    new = memo(fig)
    if not previous or previous.get("frame") != new["frame"]:
        return FigurePlan("full", (), new)
    old_arrays = previous.get("arrays") or {}
    if set(old_arrays) != set(new["arrays"]):
        return FigurePlan("full", (), new)
    edits = []
    for name, (n_new, _, whole) in new["arrays"].items():
        n_old, old_head, old_whole = old_arrays[name]
        if whole == old_whole:
            continue
        trace, field = name.split(".")
        values = _array(fig["data"][int(trace)][field])
        grows = n_old >= 1 and n_new >= n_old and _digest(values[: n_old - 1]) == old_head
        start = n_old - 1 if grows else None
        edits.append(
            ArrayEdit(int(trace), field, start, values if start is None else values[start:])
        )
    return FigurePlan("patch" if edits else "same", tuple(edits), new)


def _array(values: Any) -> npt.NDArray[Any]:
    return values if isinstance(values, np.ndarray) else np.asarray(values)


def _digest(values: npt.NDArray[Any]) -> str:
    data = np.ascontiguousarray(values)
    blake = hashlib.blake2b(data.dtype.str.encode(), digest_size=12)
    blake.update(data.tobytes())
    return blake.hexdigest()


def _frame_digest(fig: Figure) -> str:
    """Digest of the figure with its patchable arrays left out (layout, styles, trace count)."""
    frame = {
        "layout": fig.get("layout", {}),
        "data": [{k: v for k, v in t.items() if k not in PATCHABLE} for t in fig.get("data", [])],
    }
    text = json.dumps(frame, sort_keys=True, default=_plain, allow_nan=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot digest {type(value).__name__}")
