"""The 2-D loss surface of a run, written offline by `trainlight landscape`, for the run page.

One JSON file per run (`StoreLayout.surface_path`), replaced atomically when recomputed. It is
not in the database (so not under `data_version`): the reader keys its cache by the file's
modification time and size instead, so a recomputed surface shows on the next refresh and an
unchanged one is parsed once. JSON null losses (NaN/±Inf when computed) come back as NaN.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from flask_caching import Cache

from trainlight.collectors.schema import StoreLayout


@dataclass(frozen=True)
class StoredSurface:
    """`losses[j, i]`: probe loss at β = betas[j], α = alphas[i] (NaN where not finite)."""

    run_id: str
    checkpoint: str
    created_at: str
    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    losses: npt.NDArray[np.float64]
    stamp: str = ""  # the file's mtime and size when read: changes when it is recomputed


def parse_surface(document: Any) -> StoredSurface | None:
    """The surface in a decoded file, or None when it is not a well-formed one."""
    try:
        alphas = tuple(float(a) for a in document["alphas"])
        betas = tuple(float(b) for b in document["betas"])
        losses = np.array(
            [[math.nan if v is None else float(v) for v in row] for row in document["losses"]],
            dtype=np.float64,
        )
    except (KeyError, TypeError, ValueError):
        return None
    if losses.shape != (len(betas), len(alphas)) or not alphas:
        return None
    return StoredSurface(
        run_id=str(document.get("run_id", "")),
        checkpoint=str(document.get("checkpoint", "")),
        created_at=str(document.get("created_at", "")),
        alphas=alphas,
        betas=betas,
        losses=losses,
    )


def read_surface(path: Path) -> StoredSurface | None:
    """The surface stored at `path`; None when there is none or it cannot be read."""
    try:
        return parse_surface(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return None


def cached_surface(cache: Cache, layout: StoreLayout, run_id: str) -> StoredSurface | None:
    """`read_surface` of the run's file, parsed again only when the file changed."""
    try:
        path = layout.surface_path(run_id)
        stat = path.stat()
    except (OSError, ValueError):  # no file, or not a valid run id
        return None
    stamp = f"{stat.st_mtime_ns}:{stat.st_size}"
    key = f"trainlight:surface:{run_id}:{stamp}"
    hit = cache.get(key)
    if isinstance(hit, StoredSurface):
        return hit
    surface = read_surface(path)
    if surface is not None:
        surface = replace(surface, stamp=stamp)
        cache.set(key, surface)
    return surface
