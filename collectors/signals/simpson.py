"""The loss change of one optimizer step, integrated along the step with composite Simpson's rule.

LCA (Lan et al., NeurIPS 2019) allocates a step's loss change to parameters: A_i = k_i·Δθ_i, where
k is the gradient averaged along the straight path θ(α) = θ_t + α·Δθ, α ∈ [0, 1]. Then
ΣA = ∫ g(θ(α))·Δθ dα = L(θ_{t+1}) − L(θ_t) up to the quadrature error, which the residual
ΔL − ΣA measures. Composite Simpson with n intervals (h = 1/n) is k = (h/3)·(E + 4·M), where
E = g(0) + g(1) + 2·Σ g(even interior points) and M = Σ g(odd points).

Adaptive, reusing every computed point: start with n = 2 (points 0, ½, 1: three probe passes);
while |ΔL − ΣA| exceeds the `Tolerance` and n < max_intervals, double n. The old odd points
become even points (E ← E + 2M) and only the n new odd points are evaluated, so n intervals cost
n + 1 probe passes in all. A non-finite loss or ΣA stops at once (it is data, not a quadrature
error). The decision needs one host sync per level (the two losses and per-tensor dot products,
in one transfer); per-parameter values never leave the device here.

The tolerance is relative: |ΔL − ΣA| ≤ max(rel_tol·|ΔL|, 8·eps·max(|L_t|, |L_{t+1}|), abs_tol)
with rel_tol = 1%, no abs_tol and max_intervals = 128 by default. Why: "grounded" (the
components sum to the real loss change) is a statement relative to ΔL. The old fixed
abs_tol = 1e-3 is the size of a typical step's |ΔL| on a small net, so refinement never started,
and a ReLU net was grounded within 1% on only about 80% of measured steps: its gradient jumps
at every kink the step crosses, where Simpson converges like O(h), not O(h⁴). Steps whose |ΔL|
is tiny next to their parameter movement need the most intervals. In bench/lca_grounding.py
128 grounds 99.67% (ReLU MLP) and 99.83% (BatchNorm CNN) of the steps within 1% at 5.4 and 5.9
probe passes per measured step on average (64: 99.17% and 99.50%, 4.8 and 5.6 passes).
The floor is what the probe loss's dtype can resolve: ΔL computed in float32 differed from
float64 by up to 2.4·eps·|L| (ReLU MLP) and 5.7·eps·|L| (BatchNorm CNN) over 150 digit-training
steps each; below it ΔL itself is rounding, and refining would only burn probe passes (2e-6 at
a loss of 2.3 in float32, 0.07 at 1.1 in bfloat16). abs_tol stays as an override for a looser,
cheaper bound. Whether the final level met the tolerance (it may not, at max_intervals) is
reported as `grounded`.

Memory, in units of P = the trainable parameters' bytes: one snapshot buffer (1P: θ_t for the
first pass, then Δθ = θ_{t+1} − θ_t computed in place, so later points θ_{t+1} − (1−α)·Δθ and A
itself need no temporaries), E (1P) and M (1P). M has no buffer of its own: the first new point
of a level is evaluated in a buffer whose tensors are overwritten by their own gradients as
backward delivers them (a post-accumulate-grad hook per tensor), so n = 2 peaks at 3P plus the
gradient autograd materialises for one tensor at a time. Each further new point of a refined
level needs a second evaluation buffer: 4P while refining (θ(α) must exist whole during the
forward pass while E, M and Δθ are all still needed). θ_{t+1} is never copied: it is read
from the live parameters, which are never written (see `lca_probe.py`).

Sums. The tolerance check uses dot products (E·Δθ, M·Δθ: no temporaries; one host transfer per
level). The reported per-tensor sums are those of the final A, element by element, left on the
device (the flush thread copies them): they are what `lca`, `lca/total` and the residual use.

Precision: E and M are in the parameters' dtype (gradients are); A and its sums are computed in
float32 for float16/bfloat16 parameters and in the parameters' dtype otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Consume = Callable[[int, torch.Tensor], None]
"""Receives (tensor index, gradient) once per parameter tensor during a probe pass."""

Evaluate = Callable[[Sequence[torch.Tensor], Consume], torch.Tensor]
"""Runs the probe at the given parameter values, feeds each gradient to `consume` as soon as
backward has it, and returns the (detached, 0-d) probe loss."""


RESOLUTION_ULPS = 8.0
"""The floor of the tolerance, in units of eps(loss dtype)·max(|L_t|, |L_{t+1}|)."""


def resolution(dtype: torch.dtype, loss_before: float, loss_after: float) -> float:
    """What a probe loss of this dtype can tell apart: 8·eps·max(|L_t|, |L_{t+1}|)."""
    return RESOLUTION_ULPS * torch.finfo(dtype).eps * max(abs(loss_before), abs(loss_after))


@dataclass(frozen=True)
class Tolerance:
    """When the quadrature is good enough: |ΔL − ΣA| ≤ max(rel_tol·|ΔL|, resolution, abs_tol).

    `resolution` is the probe loss's floating-point floor (`resolution()`); `abs_tol` (None by
    default) is an optional looser bound for users who would rather spend fewer probe passes.
    """

    abs_tol: float | None = None
    rel_tol: float = 0.01
    max_intervals: int = 128

    def __post_init__(self) -> None:
        for name in ("abs_tol", "rel_tol"):
            value = getattr(self, name)
            if name == "abs_tol" and value is None:
                continue
            if not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        n = self.max_intervals
        if not isinstance(n, int) or n < 2 or n & (n - 1):
            raise ValueError(f"max_intervals must be a power of two >= 2, got {n!r}")

    def bound(self, actual: float, floor: float = 0.0) -> float:
        """The largest |ΔL − ΣA| accepted for a loss change `actual` and resolution `floor`."""
        return max(self.rel_tol * abs(actual), floor, self.abs_tol or 0.0)

    def accepts(self, actual: float, allocated: float, floor: float = 0.0) -> bool:
        return abs(actual - allocated) <= self.bound(actual, floor)


@dataclass(frozen=True)
class PathIntegral:
    """One step's allocation. `allocation[j]` is A for parameter tensor j (on its device)."""

    allocation: tuple[torch.Tensor, ...]
    sums: torch.Tensor  # Σ A per parameter tensor, element by element, on the device (float64)
    loss_before: float
    loss_after: float
    intervals: int
    evaluations: int  # probe passes: intervals + 1
    estimate: float  # ΣA from the dot products the tolerance check used
    grounded: bool  # the last level met the tolerance (False: max_intervals hit, or non-finite)

    @property
    def total(self) -> float:
        """ΣA (reads the device)."""
        return math.fsum(self.sums.tolist())

    @property
    def actual(self) -> float:
        return self.loss_after - self.loss_before

    @property
    def residual(self) -> float:
        return self.actual - self.total

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.total, self.loss_before, self.loss_after))


def integrate(
    evaluate: Evaluate,
    before: list[torch.Tensor | None],
    after: Sequence[torch.Tensor],
    tolerance: Tolerance,
) -> PathIntegral:
    """Allocate the loss change from `before` (θ_t) to `after` (θ_{t+1}) to each parameter.

    `before` is consumed: its tensors are overwritten with Δθ and then released (set to None)
    one by one, so the caller must not keep other references to them if memory matters.
    `after` is only read.
    """
    delta = _present(before)
    ends: list[torch.Tensor | None] = [None] * len(after)
    loss0 = evaluate(delta, _keep_or_add(ends))
    for b, a in zip(delta, after, strict=True):
        torch.sub(a, b, out=b)  # θ_t → Δθ, in place
    loss1 = evaluate(after, _keep_or_add(ends))
    odd = [torch.add(a, d, alpha=-0.5) for a, d in zip(after, delta, strict=True)]
    evaluate(odd, _overwrite(odd))
    n, evaluations = 2, 3
    while True:
        host = _check(loss0, loss1, _present(ends), odd, delta, 1.0 / (3 * n))
        actual, estimate = host[1] - host[0], math.fsum(host[2:])
        floor = resolution(loss0.dtype, host[0], host[1])
        finite = all(math.isfinite(v) for v in host)
        grounded = finite and tolerance.accepts(actual, estimate, floor)
        if grounded or not finite or n >= tolerance.max_intervals:
            break
        evaluations += _refine(evaluate, _present(ends), odd, delta, after, n)
        n *= 2
    del delta  # Δθ now lives only in `before`, which _finish releases tensor by tensor
    allocation = _finish(ends, odd, before, 1.0 / (3 * n))
    return PathIntegral(
        allocation=allocation,
        sums=_sums(allocation),
        loss_before=host[0],
        loss_after=host[1],
        intervals=n,
        evaluations=evaluations,
        estimate=estimate,
        grounded=grounded,
    )


def _check(
    loss0: torch.Tensor,
    loss1: torch.Tensor,
    ends: list[torch.Tensor],
    odd: list[torch.Tensor],
    delta: list[torch.Tensor],
    scale: float,
) -> list[float]:
    """[L(θ_t), L(θ_{t+1}), ΣA of each tensor] on the host: the one sync of a level."""
    sums = [
        (_dot(e, d) + 4.0 * _dot(m, d)) * scale for e, m, d in zip(ends, odd, delta, strict=True)
    ]
    return _to_host([loss0, loss1, *sums])


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ x·y without a temporary where the layout allows (float32 and float64, contiguous)."""
    if x.dtype in (torch.float32, torch.float64) and x.is_contiguous() and y.is_contiguous():
        return torch.dot(x.view(-1), y.view(-1))
    wide = torch.promote_types(x.dtype, torch.float32)  # float64 stays, half types widen
    return torch.mul(x.to(wide), y.to(wide)).sum()


def _refine(
    evaluate: Evaluate,
    ends: list[torch.Tensor],
    odd: list[torch.Tensor],
    delta: list[torch.Tensor],
    after: Sequence[torch.Tensor],
    n: int,
) -> int:
    """Go from n to 2n intervals in place (E ← E + 2M; M ← the new points); passes run."""
    torch._foreach_add_(ends, odd, alpha=2.0)
    # The first new point is evaluated in M's buffer, which its gradients then overwrite.
    _point_into(odd, after, delta, 1.0 / (2 * n))
    evaluate(odd, _overwrite(odd))
    spare: list[torch.Tensor] = []
    for k in range(1, n):
        if not spare:
            spare = [torch.empty_like(d) for d in delta]
        _point_into(spare, after, delta, (2 * k + 1) / (2 * n))
        evaluate(spare, _add_into(odd))
    return n


def _allocate(
    ends: torch.Tensor, odd: torch.Tensor, delta: torch.Tensor, scale: float
) -> torch.Tensor:
    """A = scale·(E + 4M)·Δθ, in E's storage (a float32 copy for float16/bfloat16 parameters)."""
    if ends.dtype in (torch.float32, torch.float64):
        return ends.add_(odd, alpha=4.0).mul_(delta).mul_(scale)
    return ends.float().add_(odd.float(), alpha=4.0).mul_(delta.float()).mul_(scale)


def _finish(
    ends: list[torch.Tensor | None],
    odd: list[torch.Tensor],
    delta: list[torch.Tensor | None],
    scale: float,
) -> tuple[torch.Tensor, ...]:
    """A per tensor; E becomes A, and Δθ and M are released tensor by tensor."""
    out: list[torch.Tensor] = []
    for j, (e, d) in enumerate(zip(ends, delta, strict=True)):
        assert e is not None and d is not None
        out.append(_allocate(e, odd[j], d, scale))
        ends[j] = delta[j] = None
        odd[j] = out[-1]  # drop M's tensor without changing the list's type
    return tuple(out)


def _sums(allocation: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Σ A per tensor (float64 where the device has it), stacked on the first tensor's device."""
    home = allocation[0].device
    dtype = torch.float32 if home.type == "mps" else torch.float64
    return torch.stack([a.sum().to(home, dtype) for a in allocation])


def _point_into(
    out: list[torch.Tensor], after: Sequence[torch.Tensor], delta: list[torch.Tensor], alpha: float
) -> None:
    """θ(α) = θ_{t+1} − (1 − α)·Δθ into `out`."""
    for o, a, d in zip(out, after, delta, strict=True):
        torch.add(a, d, alpha=alpha - 1.0, out=o)


def _keep_or_add(acc: list[torch.Tensor | None]) -> Consume:
    """Add each gradient into acc[j]; the first one is kept as is (no copy)."""

    def consume(j: int, grad: torch.Tensor) -> None:
        held = acc[j]
        if held is None:
            acc[j] = grad
        else:
            held.add_(grad)

    return consume


def _add_into(acc: list[torch.Tensor]) -> Consume:
    def consume(j: int, grad: torch.Tensor) -> None:
        acc[j].add_(grad)

    return consume


def _overwrite(buffers: list[torch.Tensor]) -> Consume:
    """Write each gradient over the evaluation buffer it was taken at (see the module docstring)."""

    def consume(j: int, grad: torch.Tensor) -> None:
        buffers[j].copy_(grad)

    return consume


def _present(tensors: list[torch.Tensor | None]) -> list[torch.Tensor]:
    out = [t for t in tensors if t is not None]
    if len(out) != len(tensors):
        raise RuntimeError("a probe pass delivered no gradient for some parameter tensors")
    return out


def _to_host(values: list[torch.Tensor]) -> list[float]:
    """Host floats of 0-d tensors in one transfer per device (float64 where the device has it)."""
    by_device: dict[torch.device, list[int]] = {}
    for index, value in enumerate(values):
        by_device.setdefault(value.device, []).append(index)
    out = [math.nan] * len(values)
    for device, indices in by_device.items():
        dtype = torch.float32 if device.type == "mps" else torch.float64
        host = torch.stack([values[i].detach().to(dtype) for i in indices]).tolist()
        for i, value in zip(indices, host, strict=True):
            out[i] = float(value)
    return out
