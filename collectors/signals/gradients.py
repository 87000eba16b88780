"""Per-layer gradient norms and update/weight ratios on the steps `watch(every=N)` observes.

A layer is a module that owns parameters (`encoder.layers.0.linear1`); its norms are over all
its parameters together. On an observed step (the root module's N-th training forward pass):

- the gradient norm ‖g‖ is the gradient the optimiser steps with. Where a `torch.optim`
  optimiser steps the model, a process-wide optimiser step pre-hook reads `p.grad` there: after
  every micro-batch of gradient accumulation, and after `GradScaler` unscaled it. Without one
  (a hand-written update), parameter post-accumulate-grad hooks, installed for the observed step
  only, keep the latest gradient's squared norm: the last micro-batch's is the step's gradient.
- the update ratio ‖Δθ‖/‖θ‖ is over one update: the parameters are copied at the optimiser's
  pre-hook and compared at its post-hook; a hand-written update (`p.data.add_(...)`) is caught
  by a copy taken at the observed forward and compared at the next training forward pass (so
  with a hand-written update, gradient accumulation ends the step at its second micro-batch:
  only an optimiser's hooks tell the step's end). Who updates is learnt on the first observed
  step: an optimiser's pre-hook, or parameters that moved without one (one host read per
  training pass of that step only). At most one copy of the watched parameters exists, and
  only during an observed step.

Everything stays on the device (fused `_foreach_norm`, one `index_add_` per step); the flush
thread copies the queued per-layer vectors to the host, so watching never synchronises a GPU.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils.hooks import RemovableHandle

from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.forward_gate import Gate
from trainlight.collectors.signals.gradient_rows import (
    GRAD,
    UPDATE,
    WEIGHT,
    Norms,
    ParameterLayers,
)
from trainlight.collectors.signals.gradient_rows import norms as _norms

UNKNOWN, OPTIMISER, MANUAL = "unknown", "optimiser", "manual"
MAX_QUEUED = 10_000  # observed steps held for the flush thread before the oldest are dropped


@dataclass
class _Step:
    """What one observed step has measured so far, on the device."""

    step: int
    # (row, parameter indices, their norms as one vector): fused per optimiser step
    norms: Norms = field(default_factory=list)
    hooked: dict[int, torch.Tensor] = field(default_factory=dict)  # ‖g‖ from the grad hooks
    copy: dict[int, torch.Tensor] = field(default_factory=dict)  # θ before the update
    # step(closure): the closure computes the gradients inside the step, read after it
    gradients_after: bool = False

    def has_gradients(self) -> bool:
        return bool(self.hooked) or any(row == GRAD for row, _, _ in self.norms)


class GradientWatcher:
    """A `writer.RowSource`: hooks on the training thread, `collect` on the flush thread."""

    def __init__(
        self,
        model: nn.Module,
        *,
        step_of: Callable[[], int],
        problems: Problems,
        every: int = 10,
        prefix: str = "",
        manual_passes: bool = False,
    ) -> None:
        self.step_of, self.problems = step_of, problems
        self.layout = ParameterLayers(model, prefix)
        self.params = self.layout.params
        self._index = {id(p): i for i, p in enumerate(self.params)}
        # optimiser -> (its parameter count, the indices of ours it steps); weak: a new
        # optimiser at a dead one's address must not inherit its answer
        self._optimisers: weakref.WeakKeyDictionary[torch.optim.Optimizer, tuple[int, list[int]]]
        self._optimisers = weakref.WeakKeyDictionary()
        self.updates = UNKNOWN  # who updates the parameters: OPTIMISER, MANUAL, once seen
        self.peak_copy_bytes = 0  # the most parameter-copy bytes held at once (benchmarks)
        self._current: _Step | None = None
        # the optimiser whose step(closure) is running: a pass opening inside the closure
        # belongs to that step, and θ has not moved yet
        self._stepping: torch.optim.Optimizer | None = None
        self._grad_hooks: list[RemovableHandle] = []
        self._queue: deque[tuple[int, list[int], torch.Tensor]] = deque()
        self._lock = threading.Lock()
        self.gate = Gate(every, None, self._observed_step_starts)  # watch's other gate warns
        self._handles = [
            register_optimizer_step_pre_hook(self._before_update),
            register_optimizer_step_post_hook(self._after_update),
        ]
        # What marks a training pass: as in ActivationWatcher
        self.root, self.root_pre, self.root_post = model, self._forward_starts, self.gate.after
        self.manual_passes = manual_passes
        if not manual_passes:
            self._handles.append(model.register_forward_pre_hook(self.root_pre))
            self._handles.append(model.register_forward_hook(self.root_post, always_call=True))

    # -- training thread -------------------------------------------------------------------
    def _forward_starts(self, module: nn.Module, args: Any) -> None:
        """Every forward pass. A training pass after a hand-written update ends the observed
        step before it; then the gate decides whether this pass is observed."""
        current = self._current
        training = module.training and torch.is_grad_enabled()
        if (
            current is not None
            and training
            and (self.updates == MANUAL or (self.updates == UNKNOWN and self._updated(current)))
        ):
            self.updates = MANUAL
            self._finish()
        self.gate.before(module, args)

    def _updated(self, current: _Step) -> bool:
        """Whether a backward ran and a parameter then moved without an optimiser: asked until
        the first update shows who updates (a host read per training pass of that step)."""
        if not current.hooked:
            return False
        with torch.no_grad():
            indices = list(current.copy)
            now = [self.params[i].detach() for i in indices]
            deltas = torch._foreach_sub(now, [current.copy[i] for i in indices])
            return bool(torch.stack(torch._foreach_norm(deltas)).sum() > 0) if deltas else False

    def _observed_step_starts(self) -> None:
        """An observed pass starts a step, or continues the open one: another micro-batch of
        gradient accumulation, or a step the optimiser skipped (GradScaler on inf: no
        parameter changed, so the copy still holds)."""
        if self._current is not None:
            self._current.step = self._step_now()
            return
        self._current = _Step(self._step_now())
        stepping = self._stepping
        if stepping is not None and self.updates == OPTIMISER:
            self._current.gradients_after = True  # read when the closure's step is done
            self._current.copy = self._copy(self._ours(stepping))
        elif self.updates != OPTIMISER:  # maybe hand-written: hooks and a copy, now
            self._watch_gradients()
            self._current.copy = self._copy(range(len(self.params)))

    def _step_now(self) -> int:
        """The step a training pass belongs to: the one after the latest logged (loops log a
        step after its update)."""
        return int(self.step_of()) + 1

    def _watch_gradients(self) -> None:
        for i, param in enumerate(self.params):
            self._grad_hooks.append(
                param.register_post_accumulate_grad_hook(lambda p, i=i: self._gradient_ready(i, p))
            )

    def _gradient_ready(self, i: int, param: torch.Tensor) -> None:
        """After each backward of the observed step (accumulation: the last one counts)."""
        current = self._current
        if current is not None and param.grad is not None:
            with torch.no_grad():
                current.hooked[i] = torch.linalg.vector_norm(param.grad.detach())

    def _before_update(
        self, optimiser: torch.optim.Optimizer, args: Any, kwargs: dict[str, Any]
    ) -> None:
        """An optimiser is about to step: the gradients are final (accumulated, unscaled),
        unless a closure passed to the step computes them (Lightning, LBFGS)."""
        closure = (args and args[0] is not None) or kwargs.get("closure") is not None
        self._stepping = optimiser if closure else None
        current = self._current
        if current is None and self.updates == OPTIMISER:
            return  # an unobserved step, the optimiser already known: the hot path, no work
        ours = self._ours(optimiser)
        if ours:
            self.updates = OPTIMISER
        if current is None or not ours:
            return
        self._drop_gradient_hooks()
        if closure:
            # θ does not move before the update: copy it now, read the gradients after
            current.gradients_after = True
            current.copy.update(self._copy([i for i in ours if i not in current.copy]))
            return
        present = self._read_gradients(current, ours)
        # The forward's copy (first observed step) still holds: accumulation changes no
        # parameter; only what is missing is copied.
        current.copy.update(self._copy([i for i in present if i not in current.copy]))

    def _read_gradients(self, current: _Step, ours: Sequence[int]) -> list[int]:
        """Queue the norms of the gradients of `ours` that exist; their indices."""
        with torch.no_grad():
            present = [i for i in ours if self.params[i].grad is not None]
            grads = [self.params[i].grad.detach() for i in present]  # type: ignore[union-attr]
            if grads:
                current.norms.append((GRAD, present, _norms(grads)))
                current.hooked.clear()
        return present

    def _after_update(self, optimiser: torch.optim.Optimizer, *_: Any) -> None:
        self._stepping = None
        current = self._current
        if current is None or self.updates != OPTIMISER:
            return
        ours = self._ours(optimiser)
        if current.gradients_after:
            stepped = set(self._read_gradients(current, ours))
            for index in [i for i in current.copy if i not in stepped]:
                del current.copy[index]  # no gradient: not updated by this step
        self._compare(current, [i for i in ours if i in current.copy])
        self._finish()

    def _compare(self, current: _Step, indices: Sequence[int]) -> None:
        """‖Δθ‖² and ‖θ‖² of `indices` against their copies, which are then freed."""
        if not indices:
            return
        with torch.no_grad():
            before = [current.copy.pop(i) for i in indices]
            now = [self.params[i].detach() for i in indices]
            both = _norms([*torch._foreach_sub(now, before), *before])  # one fused norm call
            current.norms.append((UPDATE, list(indices), both[: len(indices)]))
            current.norms.append((WEIGHT, list(indices), both[len(indices) :]))

    def _copy(self, indices: Sequence[int] | range) -> dict[int, torch.Tensor]:
        copies = {i: self.params[i].detach().clone() for i in indices}
        held = sum(c.numel() * c.element_size() for c in copies.values())
        if self._current is not None:
            held += sum(c.numel() * c.element_size() for c in self._current.copy.values())
        self.peak_copy_bytes = max(self.peak_copy_bytes, held)
        return copies

    def _ours(self, optimiser: torch.optim.Optimizer) -> list[int]:
        """Indices of our parameters that `optimiser` steps (cached until its groups change)."""
        groups = optimiser.param_groups
        count = sum(len(g["params"]) for g in groups)
        cached = self._optimisers.get(optimiser)
        if cached is None or cached[0] != count:
            ours = [self._index[id(p)] for g in groups for p in g["params"] if id(p) in self._index]
            cached = self._optimisers[optimiser] = (count, ours)
        return cached[1]

    def _finish(self) -> None:
        """Close the observed step: a hand-written update is compared now; per-layer sums."""
        current, self._current = self._current, None
        self._drop_gradient_hooks()
        if current is None:
            return
        if self.updates == MANUAL:
            self._compare(current, list(current.copy))
        current.copy.clear()
        if current.hooked:  # a hand-written update: the hooks' gradients
            indices = list(current.hooked)
            current.norms.append((GRAD, indices, torch.stack(list(current.hooked.values()))))
        if not current.has_gradients():
            return
        try:
            values = self.layout.per_layer(current.norms)
        except Exception as exc:  # monitoring must never crash training
            self.problems.report(
                "watch_gradients_failed", f"watch(): gradient norms skipped: {exc!r}"
            )
            return
        layers = self.layout.layers_with_gradients(current.norms)
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
            self._queue.append((current.step, layers, values))

    def _drop_step(self) -> None:
        self._current = None
        self._drop_gradient_hooks()

    def _drop_gradient_hooks(self) -> None:
        hooks, self._grad_hooks = self._grad_hooks, []
        for hook in hooks:
            hook.remove()

    # -- flush thread ------------------------------------------------------------------------
    def collect(self) -> dict[str, list[Any]] | None:
        """`layer_metrics` rows `grad_norm`, `param_count` and `update_ratio` of the steps
        closed since."""
        with self._lock:
            queued, self._queue = self._queue, deque()
        if not queued:
            return None
        return self.layout.rows(queued, self.problems)

    def remove(self, collective: bool = True) -> None:
        """Remove every hook (idempotent); a hand-written update's observed step in progress is
        closed first. (`collective` is ActivationWatcher's: gradients are not exchanged.)"""
        if self._current is not None and self.updates == MANUAL:
            self._finish()
        self._drop_step()
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()
        self._drop_gradient_hooks()
