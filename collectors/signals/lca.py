"""`lca`: Loss Change Allocation per layer, measured online on a fixed probe batch.

LCA (Lan et al., NeurIPS 2019) splits each step's loss change over the parameters,
A_i = k_i·Δθ_i with k the gradient averaged along the step (Simpson's rule, adaptive; see
simpson.py). The reference method stores every iteration's weights and gradients and integrates
offline over the training set; here a step is measured every `every` steps on a probe batch the
user closes over (`probe_loss(model)`), with memory bounded by a few copies of the parameters:

    lca = LossChangeAllocator(model, probe_loss, every=25, problems=problems)
    with lca.measure(step):
        opt.step()

On a measured step (step % every == 0) `measure` snapshots θ_t before the step; after it, all
probe passes run (θ_t, the midpoint, θ_{t+1}, and more points if the tolerance asks for them).
Evaluating g(θ_t) after the step rather than before gives the same numbers (the probe is a fixed
function of θ), keeps only θ_t alive across `opt.step()` (1P instead of 2P), and evaluates every
point with the same buffers even if the step changed them (e.g. an LBFGS closure). How the probe
avoids disturbing training (parameters, `.grad`, BN statistics, dropout, RNG): lca_probe.py.

Rows per measured step (DESIGN.md §3): `metrics` `lca/total` (ΣA), `lca/actual` (the probe loss
change ΔL), `lca/residual` (ΔL − ΣA), `lca/intervals` (Simpson intervals used), `lca/grounded`
(1 when the residual met the tolerance, 0 when max_intervals ran out first), `lca/nonfinite`
(1 when the losses or the allocation are NaN/Inf, which are stored as they are: the
`nonfinite` signal turns red on them); `layer_metrics` `lca`, `lca_helping` per layer
(lca_rows.py); and `lca_frames` thinned to at most `max_frames` per layer, with
`lca/frame_stride` and `lca/every` rows when the stride changes (the contract is in
lca_frames.py).

Split like `log()`: everything heavy (the probe passes, A, frame pooling) runs inside `measure`
on the device; the only host sync is the quadrature's tolerance check. Per-element results stay
on the device until the flush thread's `collect()` copies them, once per device per flush.
Nothing raises into training: failures are reported once per kind via `Problems` and counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.lca_frames import (
    EVERY_KEY,
    STRIDE_KEY,
    FrameThinner,
    frame_name,
    frame_shape,
    pool_frame,
)
from trainlight.collectors.signals.lca_probe import Probe, ProbeLoss, probe_mode
from trainlight.collectors.signals.lca_rows import (
    ACTUAL,
    GROUNDED,
    INTERVALS,
    NONFINITE,
    RESIDUAL,
    TOTAL,
    FrameSpec,
    StepRecord,
    columns,
    owner,
)
from trainlight.collectors.signals.simpson import PathIntegral, Tolerance, integrate

__all__ = [
    "ACTUAL",
    "GROUNDED",
    "INTERVALS",
    "NONFINITE",
    "RESIDUAL",
    "TOTAL",
    "LossChangeAllocator",
]


@dataclass(frozen=True)
class _Snapshot:
    """θ_t of the trainable parameters, taken before a measured step."""

    step: int
    names: tuple[str, ...]
    params: tuple[torch.Tensor, ...]
    before: list[torch.Tensor | None]  # handed to `integrate`, which releases it


class LossChangeAllocator:
    """Online LCA of `model` on `probe_loss(model)`; a `writer.RowSource`.

    Args:
        model: the trained module; its trainable floating-point parameters are allocated.
        probe_loss: `probe_loss(model) -> scalar Tensor` on a FIXED batch (closed over).
        every: steps between measurements (steps with step % every == 0 are measured).
        problems: where failures are reported (once per kind) and counted.
        rel_tol, abs_tol: the quadrature is refined while |ΔL − ΣA| > max(rel_tol·|ΔL|, the
            probe loss's resolution 8·eps·|L|, abs_tol); abs_tol=None (the default) adds no
            absolute bound. See simpson.py for why the default is relative.
        max_intervals: Simpson intervals at most (a power of two; 2 means no refinement).
        max_frames: frames kept per layer over the whole run (see lca_frames.py).
        frame_cells: frames are pooled to at most frame_cells × frame_cells.
        max_pending: measurements held for the flush thread; beyond it the oldest are dropped.
        keep_allocation: keep the latest per-parameter A in `last.allocation` (tests,
            notebooks); otherwise `last` keeps only the scalars, and A is freed (it is 1P).
        active: False makes `measure` a no-op: ranks other than 0 of a distributed job (their
            parameters equal rank 0's, and they write nothing).
    """

    def __init__(
        self,
        model: nn.Module,
        probe_loss: ProbeLoss,
        *,
        every: int,
        problems: Problems,
        abs_tol: float | None = None,
        rel_tol: float = 0.01,
        max_intervals: int = 128,
        max_frames: int = 500,
        frame_cells: int = 64,
        max_pending: int = 256,
        keep_allocation: bool = False,
        active: bool = True,
    ) -> None:
        for name, value in (
            ("every", every),
            ("frame_cells", frame_cells),
            ("max_pending", max_pending),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not callable(probe_loss):
            raise TypeError(f"probe_loss must be callable as probe_loss(model), got {probe_loss!r}")
        self.model = model
        self.every = every
        self.problems = problems
        self.tolerance = Tolerance(abs_tol, rel_tol, max_intervals)
        self.frame_cells = frame_cells
        self.max_pending = max_pending
        self.thinner = FrameThinner(max_frames)
        self.keep_allocation = keep_allocation
        self.active = active
        self.last: PathIntegral | None = None  # the latest measurement
        self._probe = Probe(model, probe_loss)
        self._lock = threading.Lock()  # guards _pending (training thread vs. flush thread)
        self._pending: list[StepRecord] = []

    # -- training thread -----------------------------------------------------------------------
    def measure(self, step: int) -> AbstractContextManager[None]:
        """Wrap `optimizer.step()`: on a measured step, allocate its probe loss change."""
        try:
            step = int(step)
            if not self.active or step % self.every:
                return nullcontext()
        except Exception as exc:  # monitoring must never crash training
            self.problems.report(f"lca_step:{type(exc).__name__}", f"lca.measure(): {exc!r}")
            return nullcontext()
        return self._measured(step)

    @contextmanager
    def _measured(self, step: int) -> Iterator[None]:
        snapshot = self._guard(step, self._snapshot, step)
        yield  # an exception from the optimizer step propagates; the measurement is dropped
        if snapshot is not None:
            self._guard(step, self._allocate, snapshot)

    def _guard(self, step: int, action: Callable[..., Any], *args: Any) -> Any:
        try:
            return action(*args)
        except Exception as exc:  # monitoring must never crash training
            self.problems.report(
                f"lca_measure:{type(exc).__name__}",
                f"LCA skipped at step {step} (and counted): {exc!r}",
            )
            return None

    def _snapshot(self, step: int) -> _Snapshot | None:
        named = [
            (name, p)
            for name, p in self.model.named_parameters()
            if p.requires_grad and p.is_floating_point()
        ]
        if not named:
            raise ValueError("the model has no trainable floating-point parameters")
        with torch.no_grad():
            before: list[torch.Tensor | None] = [p.detach().clone() for _, p in named]
        names = tuple(name for name, _ in named)
        return _Snapshot(step, names, tuple(p for _, p in named), before)

    def _allocate(self, snapshot: _Snapshot) -> None:
        evaluate = self._probe.evaluator(snapshot.names)
        after = [p.detach() for p in snapshot.params]
        with probe_mode(self.model), torch.no_grad():
            result = integrate(evaluate, snapshot.before, after, self.tolerance)
        self._push(self._record(snapshot, result))
        self.last = result if self.keep_allocation else replace(result, allocation=())

    def _record(self, snapshot: _Snapshot, result: PathIntegral) -> StepRecord:
        """Rows of one measurement: host scalars now; per-element statistics stay on device."""
        step, allocation = snapshot.step, result.allocation
        home = allocation[0].device
        device_parts = [torch.stack([(a < 0).sum().to(home) for a in allocation]).float()]
        extra: tuple[tuple[str, float], ...] = ()
        keep, changed = self.thinner.admit(step // self.every)
        if changed:
            extra = ((STRIDE_KEY, float(self.thinner.stride)), (EVERY_KEY, float(self.every)))
        frames: list[FrameSpec] = []
        for name, a in zip(snapshot.names, allocation, strict=True):
            if keep and a.dim() >= 2:
                rows, cols = frame_shape(a.shape, self.frame_cells)
                frames.append(FrameSpec(frame_name(name), rows, cols))
                device_parts.append(pool_frame(a, self.frame_cells).reshape(-1).to(home))
        return StepRecord(
            step=step,
            wall_time=time.time(),
            loss_before=result.loss_before,
            loss_after=result.loss_after,
            intervals=result.intervals,
            grounded=result.grounded,
            extra=extra,
            layers=tuple(owner(name) for name in snapshot.names),
            sizes=tuple(a.numel() for a in allocation),
            frames=tuple(frames),
            sums=result.sums,
            device_values=torch.cat(device_parts),
        )

    def _push(self, record: StepRecord) -> None:
        with self._lock:
            self._pending.append(record)
            dropped = len(self._pending) - self.max_pending
            if dropped > 0:
                del self._pending[:dropped]
        if dropped > 0:
            self.problems.report(
                "lca_pending_full",
                f"lca: more than {self.max_pending} measurements waiting for the flush thread; "
                "dropping the oldest",
            )

    # -- flush thread --------------------------------------------------------------------------
    def collect(self) -> list[dict[str, Any]] | None:
        """Rows of every measurement since the last call (one list entry per table), or None."""
        try:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return None
            return columns(pending)
        except Exception as exc:  # a raising source would lose the whole segment
            self.problems.report(f"lca_collect:{type(exc).__name__}", f"lca rows skipped: {exc!r}")
            return None
