"""Loss-surface slices along a filter-normalised random direction (Li et al., NeurIPS 2018).

A 1-D slice L(θ + α·d) for α in [-span, span] shows whether the current weights sit in a wide
basin or a sharp ravine. A raw random direction is meaningless across layers and architectures
because a network with ReLUs or normalisation is invariant to rescaling a filter: the fix is to
give each output filter (row of a linear weight, output channel of a conv) of the direction the
norm of the same filter of the weights. Biases and normalisation parameters (tensors with fewer
than two dimensions) get zero: moving them would dominate the picture without meaning.

The direction is drawn once per run from a seeded generator and kept, so slices taken at
different steps are comparable (the run page animates them). Each point is a forward pass of the
user's `probe_loss(model)` on a fixed batch, under `functional_call` with our own tensors: the
parameters are never written, eval mode and a forked RNG as for LCA (lca_probe.py), no autograd.

`sharpness` is the curvature at α = 0 of a least-squares parabola through the central five
points: one number that rises when the basin narrows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from trainlight.collectors.signals.lca_probe import ProbeLoss, _Bound, probe_mode

CENTRAL_POINTS = 5  # points the sharpness parabola is fitted to


@dataclass(frozen=True)
class LossSlice:
    """Probe losses at θ + α·d for each α (NaN/Inf kept as they are)."""

    alphas: tuple[float, ...]
    losses: tuple[float, ...]
    sharpness: float


def filter_normalised_direction(
    parameters: Sequence[tuple[str, torch.Tensor]], seed: int
) -> dict[str, torch.Tensor]:
    """A Gaussian direction with each output filter rescaled to its weight filter's norm."""
    generator = torch.Generator().manual_seed(seed)
    direction: dict[str, torch.Tensor] = {}
    for name, weight in parameters:
        drawn = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
        drawn = drawn.to(device=weight.device, dtype=weight.dtype)
        if weight.dim() < 2:
            direction[name] = torch.zeros_like(weight)
            continue
        with torch.no_grad():
            w = weight.detach().flatten(1).float()
            d = drawn.flatten(1).float()
            scale = w.norm(dim=1, keepdim=True) / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
            direction[name] = (d * scale).reshape(weight.shape).to(weight.dtype)
    return direction


def alphas_for(points: int, span: float) -> tuple[float, ...]:
    """`points` evenly spaced offsets in [-span, span]; odd `points` put one exactly at 0."""
    if points < CENTRAL_POINTS or points % 2 == 0:
        raise ValueError(f"landscape points must be odd and >= {CENTRAL_POINTS}, got {points!r}")
    if not span > 0 or span == float("inf"):
        raise ValueError(f"landscape span must be a positive finite number, got {span!r}")
    half = points // 2
    return tuple(span * (i - half) / half for i in range(points))


def sharpness(alphas: Sequence[float], losses: Sequence[float]) -> float:
    """Curvature (2a of a·α² + b·α + c) fitted to the central points; NaN if any is non-finite."""
    mid = len(alphas) // 2
    lo, hi = mid - CENTRAL_POINTS // 2, mid + CENTRAL_POINTS // 2 + 1
    x = torch.tensor(alphas[lo:hi], dtype=torch.float64)
    y = torch.tensor(losses[lo:hi], dtype=torch.float64)
    if not torch.isfinite(y).all():
        return float("nan")
    design = torch.stack([x**2, x, torch.ones_like(x)], dim=1)
    coefficients = torch.linalg.lstsq(design, y.unsqueeze(1)).solution
    return float(2.0 * coefficients[0, 0])


class LossSlicer:
    """Slices of `probe_loss(model)` through the current weights along one fixed direction."""

    def __init__(
        self,
        model: nn.Module,
        probe_loss: ProbeLoss,
        points: int = 21,
        span: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.alphas = alphas_for(points, span)
        self._model = model
        self._bound = _Bound(model, probe_loss)
        self._names = [name for name, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.direction = filter_normalised_direction([(n, params[n]) for n in self._names], seed)

    def slice(self) -> LossSlice:
        """Losses at every α for the weights as they are now; the model is left untouched."""
        params = dict(self._model.named_parameters())
        devices = sorted({p.device.index or 0 for p in params.values() if p.device.type == "cuda"})
        losses = []
        with torch.no_grad(), probe_mode(self._model), torch.random.fork_rng(devices=devices):
            base = {name: params[name].detach() for name in self._names}
            for alpha in self.alphas:
                moved = {n: base[n] + alpha * self.direction[n] for n in self._names}
                losses.append(self._loss(moved))
        values = torch.stack(losses).double().cpu().tolist()  # one host copy per slice
        return LossSlice(self.alphas, tuple(values), sharpness(self.alphas, values))

    def _loss(self, moved: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = functional_call(self._bound, {f"model.{n}": t for n, t in moved.items()}, ())
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("probe_loss(model) must return a scalar Tensor")
        return loss.detach().reshape(())
