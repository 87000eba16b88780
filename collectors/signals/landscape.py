"""Loss-surface slices along a filter-normalised random direction (Li et al., NeurIPS 2018).

A 1-D slice L(θ + α·d) for α in [-span, span] shows whether the current weights sit in a wide
basin or a sharp ravine. A raw random direction is meaningless across layers and architectures
because a network with ReLUs or normalisation is invariant to rescaling a filter: the fix is to
give each output filter (row of a linear weight, output channel of a conv) of the direction the
norm of the same filter of the weights. Biases and normalisation parameters (tensors with fewer
than two dimensions) get zero: moving them would dominate the picture without meaning. This is
`normalize_directions_for_weights(..., norm='filter', ignore='biasbn')` of the authors' code.

The raw Gaussian direction is drawn once per run from a seeded generator (one draw per trainable
parameter, in `named_parameters()` order) and kept; every slice filter-normalises it to the
weights *as they are at that step*. Normalising once and reusing the result would let the
direction's filters shrink relative to weights that grow during training, so the slices' width
and the sharpness would follow the weight norm: the very artefact the normalisation removes.
Because the direction is a function of (seed, current weights) only, `trainlight landscape`
rebuilds the same one from a checkpoint (landscape_surface.py).

Each point is a forward pass of the user's `probe_loss(model)` on a fixed batch, under
`functional_call` with our own tensors: the parameters are never written, eval mode and a forked
RNG as for LCA (lca_probe.py), no autograd.

`sharpness` is the curvature at α = 0 of a least-squares parabola through the central five
points: one number that rises when the basin narrows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from trainlight.collectors.signals.lca_probe import ProbeLoss, _Bound, probe_mode

CENTRAL_POINTS = 5  # points the sharpness parabola is fitted to
MAX_SEED = 2**53 - 1  # seed and seed + 1 are exact as doubles


@dataclass(frozen=True)
class LossSlice:
    """Probe losses at θ + α·d for each α (NaN/Inf kept as they are)."""

    alphas: tuple[float, ...]
    losses: tuple[float, ...]
    sharpness: float


def random_direction(
    parameters: Sequence[tuple[str, torch.Tensor]], seed: int
) -> dict[str, torch.Tensor]:
    """The raw Gaussian direction of `seed`: float32, drawn on the CPU in the given order."""
    check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(weight.shape, generator=generator, dtype=torch.float32).to(weight.device)
        for name, weight in parameters
    }


def normalise_direction(
    raw: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`raw` with each output filter rescaled to the norm of that filter of `weights` (in the
    weights' dtype); zero for tensors with fewer than two dimensions."""
    direction: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, weight in weights.items():
            if weight.dim() < 2:
                direction[name] = torch.zeros_like(weight)
                continue
            w = weight.detach().flatten(1).float()
            d = raw[name].flatten(1)
            scale = w.norm(dim=1, keepdim=True) / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
            direction[name] = (d * scale).reshape(weight.shape).to(weight.dtype)
    return direction


def filter_normalised_direction(
    parameters: Sequence[tuple[str, torch.Tensor]], seed: int
) -> dict[str, torch.Tensor]:
    """The direction of `seed` filter-normalised to these weights (what a slice at them uses)."""
    return normalise_direction(random_direction(parameters, seed), dict(parameters))


def check_seed(seed: int) -> None:
    """Seeds are stored as a DOUBLE metric and the 2-D surface also uses seed + 1."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
        raise ValueError(f"landscape seed must be an int in [0, 2**53 - 1), got {seed!r}")


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
    """Slices of `probe_loss(model)` through the current weights along the run's direction.

    `direction` is the one the latest slice used (before the first: normalised to the weights
    at construction); the raw draw behind it never changes. Both are held (two copies of the
    trainable parameters, the draw in float32); renormalising costs one norm per filter per
    slice, on top of its `points` forward passes.
    """

    def __init__(
        self,
        model: nn.Module,
        probe_loss: ProbeLoss,
        points: int = 21,
        span: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.alphas = alphas_for(points, span)
        self.seed = seed
        self._model = model
        self._bound = _Bound(model, probe_loss)
        self._names = [name for name, p in model.named_parameters() if p.requires_grad]
        weights = self._weights()
        self._raw = random_direction(list(weights.items()), seed)
        self.direction = normalise_direction(self._raw, weights)

    def _weights(self) -> dict[str, torch.Tensor]:
        params = dict(self._model.named_parameters())
        return {name: params[name].detach() for name in self._names}

    def slice(self) -> LossSlice:
        """Losses at every α along the run's direction filter-normalised to the weights as
        they are now; the model is left untouched."""
        with torch.no_grad():
            self.direction = normalise_direction(self._raw, self._weights())
        return self.slice_along(self.direction)

    def slice_along(self, direction: Mapping[str, torch.Tensor]) -> LossSlice:
        """Losses at θ + α·direction for the current weights θ (any direction, as given)."""
        params = dict(self._model.named_parameters())
        devices = sorted({p.device.index or 0 for p in params.values() if p.device.type == "cuda"})
        losses = []
        with torch.no_grad(), probe_mode(self._model), torch.random.fork_rng(devices=devices):
            base = self._weights()
            for alpha in self.alphas:
                moved = {n: base[n] + alpha * direction[n] for n in self._names}
                losses.append(self._loss(moved))
        values = torch.stack(losses).double().cpu().tolist()  # one host copy per slice
        return LossSlice(self.alphas, tuple(values), sharpness(self.alphas, values))

    def _loss(self, moved: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = functional_call(self._bound, {f"model.{n}": t for n, t in moved.items()}, ())
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("probe_loss(model) must return a scalar Tensor")
        return loss.detach().reshape(())
