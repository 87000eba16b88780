"""SmeLU, the Smooth ReLU: a ReLU whose kink is replaced by a quadratic of half-width `beta`.

    SmeLU(x) = 0                  for x <= -beta
             = (x + beta)² / 4β   for |x| <= beta
             = x                  for x >= beta

Value and gradient are continuous (the gradient goes 0 → 1 linearly across [-beta, beta]), which
published work on reproducibility links to smaller prediction differences between replicas than
ReLU's kink. The quadratic is evaluated on x clamped to [-beta, beta], so huge inputs never
overflow in the branch `where` discards (an inf there would turn the backward pass into NaN).

The activation watcher recognises this class by name: a unit counts as active when x > -beta.
"""

from __future__ import annotations

import torch
from torch import nn


class SmeLU(nn.Module):
    """Smooth ReLU with a quadratic transition of half-width `beta` (> 0)."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        beta = float(beta)
        if not beta > 0 or beta == float("inf"):
            raise ValueError(f"SmeLU beta must be a positive finite number, got {beta!r}")
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = torch.clamp(x, -self.beta, self.beta)
        quadratic = (inside + self.beta) ** 2 / (4.0 * self.beta)
        return torch.where(x >= self.beta, x, quadratic)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
