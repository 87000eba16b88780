"""`trainlight landscape`: a 2-D loss surface through a saved checkpoint, computed offline.

The run page's 1-D slices (signals/landscape.py) follow the run's seeded random direction,
filter-normalised to the weights of each slicing step; this plots L(θ + α·d₀ + β·d₁) on a grid
from a checkpoint, after the fact, where a points² grid of forward passes costs nothing to the
training. d₀ is the run's direction (its recorded seed) and d₁ the one of seed + 1, both drawn and
filter-normalised to the checkpoint's weights by the very functions the slices use, so the
surface's α axis (β = 0) is the slice the run recorded at the checkpoint's step. The parameters
are never written: every point is a `functional_call` of the user's `probe_loss(model)` under
eval mode, no autograd and a forked RNG.

The surface is one JSON file per run in the store (`StoreLayout.surface_path`), written
atomically, which the dashboard reads; NaN and ±Inf losses are stored as null (JSON has no NaN).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress
from torch import nn
from torch.func import functional_call

from trainlight.collectors.schema import StoreLayout, write_atomically
from trainlight.collectors.signals.landscape import (
    alphas_for,
    check_seed,
    filter_normalised_direction,
)
from trainlight.collectors.signals.lca_probe import ProbeLoss, _Bound, probe_mode


@dataclass(frozen=True)
class SurfaceJob:
    """What `trainlight landscape` was asked to compute."""

    run_id: str
    model: str  # "pkg.module:factory", factory() -> nn.Module
    checkpoint: Path  # a state_dict saved with torch.save
    probe: str  # "pkg.module:probe_loss", probe_loss(model) -> scalar loss on a fixed batch
    points: int = 21
    span: float = 1.0
    directory: str | None = None  # the store (None: $TRAINLIGHT_DIR or the default)
    seed: int = 0  # the run's slice direction; β moves along seed + 1


@dataclass(frozen=True)
class Surface:
    """Probe losses on the grid: `losses[j][i]` at β = betas[j], α = alphas[i] (NaN kept)."""

    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    losses: tuple[tuple[float, ...], ...]


def load_object(spec: str) -> Any:
    """The object named "pkg.module:attr" (attr may be dotted), or ValueError saying why."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'pkg.module:name', got {spec!r}")
    found: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        if not hasattr(found, part):
            raise ValueError(f"{spec!r}: {module_name} has no attribute {attr!r}")
        found = getattr(found, part)
    return found


def loss_surface(
    model: nn.Module,
    probe_loss: ProbeLoss,
    points: int = 21,
    span: float = 1.0,
    *,
    seed: int = 0,
    advance: Callable[[], None] = lambda: None,
) -> Surface:
    """Losses at θ + α·d₀ + β·d₁ over [-span, span]², d₀ and d₁ the filter-normalised
    directions of `seed` and `seed + 1`; `advance()` after each point.

    One host copy per row of the grid; the model is left untouched.
    """
    alphas = alphas_for(points, span)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    params = dict(model.named_parameters())
    weights = [(n, params[n].detach()) for n in names]
    d0, d1 = (filter_normalised_direction(weights, s) for s in (seed, seed + 1))
    bound = _Bound(model, probe_loss)
    devices = sorted({p.device.index or 0 for p in params.values() if p.device.type == "cuda"})
    rows = []
    with torch.no_grad(), probe_mode(model), torch.random.fork_rng(devices=devices):
        base = {n: params[n].detach() for n in names}
        for beta in alphas:
            row = []
            for alpha in alphas:
                moved = {f"model.{n}": base[n] + (alpha * d0[n] + beta * d1[n]) for n in names}
                row.append(_scalar(functional_call(bound, moved, ())))
                advance()
            rows.append(tuple(torch.stack(row).double().cpu().tolist()))
    return Surface(alphas, alphas, tuple(rows))


def _scalar(loss: Any) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("probe_loss(model) must return a scalar Tensor")
    return loss.detach().reshape(())


def surface_json(surface: Surface, job: SurfaceJob, created_at: dt.datetime) -> bytes:
    """The stored file: the grid, what it was computed from, and when (ISO-8601 UTC)."""

    def finite(value: float) -> float | None:
        return value if math.isfinite(value) else None

    document = {
        "run_id": job.run_id,
        "checkpoint": str(job.checkpoint),
        "points": job.points,
        "span": job.span,
        "seed": job.seed,
        "alphas": list(surface.alphas),
        "betas": list(surface.betas),
        "losses": [[finite(v) for v in row] for row in surface.losses],
        "created_at": created_at.astimezone(dt.UTC).isoformat(),
    }
    return json.dumps(document, allow_nan=False).encode()


def load_model(job: SurfaceJob) -> nn.Module:
    """factory() with the checkpoint's weights loaded (weights only: no code from the file)."""
    model = load_object(job.model)()
    if not isinstance(model, nn.Module):
        raise ValueError(f"{job.model} returned {type(model).__name__}, not an nn.Module")
    state = torch.load(job.checkpoint, weights_only=True, map_location="cpu")
    model.load_state_dict(state)
    return model


def run(job: SurfaceJob) -> Path:
    """Compute the job's surface with a progress bar and store it; returns the file written."""
    path = StoreLayout.resolve(job.directory).surface_path(job.run_id)  # checks the run id
    alphas_for(job.points, job.span)  # bad grid arguments fail before any loading
    check_seed(job.seed)
    model, probe_loss = load_model(job), load_object(job.probe)
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task(f"loss surface of {job.run_id}", total=job.points**2)
        surface = loss_surface(
            model,
            probe_loss,
            job.points,
            job.span,
            seed=job.seed,
            advance=lambda: progress.advance(task),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, surface_json(surface, job, dt.datetime.now(dt.UTC)))
    return path
