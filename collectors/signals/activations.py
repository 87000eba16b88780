"""Activation statistics of ReLU-family layers: dead and undead units, variance, non-finite values.

`ActivationWatcher` is what `Monitor.watch(model, every=N)` installs (DESIGN.md §3-§5). Forward
hooks write per-unit statistics of each observed training batch into small buffers on the module's
device; a layer that has seen `window` samples stacks its `KEYS` values and the histogram of its
units' variances (`arrays` rows `act_var_hist`, for layer sizing) into one device tensor and
queues it; the flush thread copies all queued windows to the host at once. Hooks never read a
device value, so watching never synchronises a GPU.

Which activations: modules recognised by what they compute (activation_kinds.py), hooked here,
and activation function calls inside the model's forward (functional_watch.py), fed on observed
passes to the same `LayerHook`s, so both spellings give the same rows.

Definitions. A unit is an index along `unit_dim` of the output (channels of [B, C, ...], features
of [B, F]; -1 for [batch, seq, features]; always the last axis for an activation of a Linear's
output, e.g. (seq, batch, d) in a transformer); dim 0 is the batch and windows count its elements. A
unit fires in a batch when its batch maximum exceeds `tau` (a NaN makes the maximum NaN: no
firing); dead = fired in no batch of the window. Variances are population variances of all the
unit's values in the window. `nonfinite` counts unit-batches: (unit, batch) pairs whose values
include a NaN or ±Inf (precisely: whose batch mean is not finite; an overflow counts too).

Why so (measured on a CPU, [64, 16, 28, 28] float32 outputs; bench/watch_overhead.py): inside a
training loop caches are cold and even a tiny op costs ~50 us, so a batch costs three ops: mean,
fused squared deviation (aten mse_loss, no reduction), sum; plus `amax` unless outputs are never
negative and tau = 0, where "max > 0" is "mean > 0". `var_mean` took 2.5-4.6 ms, `(x > tau).sum()`
0.4-1.4 ms, counting non-finite values `isfinite(x).sum()` 0.8-2.4 ms. Deviations from the batch
mean (not raw squares) keep a stuck unit's variance exactly 0; Chan's formula merges batches.
A module called k times per forward pass gets k series: `name`, `name#2`, ...
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from trainlight.collectors.distributed import RankGroup
from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.activation_kinds import (
    Kind,
    is_probed,
    looks_like_activation,
    module_kind,
)
from trainlight.collectors.signals.activation_rows import window_rows
from trainlight.collectors.signals.forward_gate import Gate
from trainlight.collectors.signals.functional_watch import PassTracker
from trainlight.collectors.signals.shared_windows import SharedWindows
from trainlight.collectors.signals.unit_stats import (
    KEYS,
    LayerSettings,
    Scratch,
    UnitStats,
)

DISCOVERY_PASSES = 2  # observed passes tracked before a model is known to call no activation
REDISCOVER_EVERY = 100  # ... and then every this many observed passes

__all__ = ["KEYS", "ActivationWatcher", "LayerHook"]  # KEYS: the rows' keys, for callers


class LayerHook:
    """The forward hook of one module: routes each observed call to its call site's stats."""

    def __init__(self, base: LayerSettings, watcher: ActivationWatcher, scratch: Scratch) -> None:
        self.base, self.watcher, self.gate, self.scratch = base, watcher, watcher.gate, scratch
        self.sites: list[UnitStats | None] = []
        self.unit_dims: list[int] = []  # per call site, as the last tracked pass found it
        self.pass_id = self.calls = 0

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        if not (self.gate.open and module.training and torch.is_grad_enabled()):
            if self.gate.passes == 0 and module.training and torch.is_grad_enabled():
                self.watcher.problems.report(
                    "watch_root_not_called",
                    "watch(): the watched model's forward is never called; watch the module "
                    "that the training loop calls",
                )
            return
        if self.pass_id != self.gate.pass_id:
            self.pass_id, self.calls = self.gate.pass_id, 0
        self.calls += 1
        index, tracker = self.calls - 1, self.watcher.tracker
        if tracker.active or index >= len(self.unit_dims):
            unit_dim = tracker.unit_dim_of(args[0] if args else None, self.base.unit_dim)
            self.unit_dims += [self.base.unit_dim] * (index + 1 - len(self.unit_dims))
            self.unit_dims[index] = unit_dim
        self.record(index, output, self.unit_dims[index])

    def record(self, index: int, output: Any, unit_dim: int) -> None:
        """Observe one output of call site `index` (never raises: failures are reported)."""
        try:
            with torch.no_grad(), torch._C.DisableTorchFunction():  # our ops skip the mode
                self._observe(index, output, unit_dim)
        except Exception as exc:  # monitoring must never crash training
            if index < len(self.sites):
                self.sites[index] = None  # start afresh: new device, dtype, ...
            self.watcher.problems.report(
                f"watch_hook_failed:{self.base.name}",
                f"watch(): statistics of layer {self.base.name!r} skipped (counted per layer; "
                f"other layers failing alike are not logged again): {exc!r}",
                once_per=f"watch_hook_failed:{type(exc).__name__}",
            )

    def _observe(self, index: int, x: Any, unit_dim: int) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a Tensor output, got {type(x).__name__}")
        if x.dim() < 2 or not x.numel() or x.is_meta:
            self._skip(x)
            return
        self.sites += [None] * (index + 1 - len(self.sites))
        unit_dim %= x.dim()
        stats, units = self.sites[index], x.shape[unit_dim]
        if stats is not None and (stats.device, stats.input_dtype) != (x.device, x.dtype):
            self._report(
                "watch_layer_moved",
                f"outputs moved from {stats.device}/{stats.input_dtype} to {x.device}/{x.dtype}; "
                "its window restarts",
            )
            stats = None
        if stats is None or (stats.units, stats.settings.unit_dim) != (units, unit_dim):
            name = self.base.name if index == 0 else f"{self.base.name}#{index + 1}"
            settings = replace(self.base, name=name, unit_dim=unit_dim)
            stats = self.sites[index] = UnitStats(settings, units, x, self.scratch)
        stats.update(x)
        if stats.samples >= stats.settings.window:
            self.watcher.window_full(stats)

    def _skip(self, x: torch.Tensor) -> None:
        """Outputs with nothing to measure: counted per layer, said once per kind."""
        if x.is_meta:
            self._report("watch_meta_output", "outputs on the meta device hold no values; skipped")
        elif x.dim() < 2:
            self._report(
                "watch_unbatched_output",
                f"outputs of shape {tuple(x.shape)} have no [batch, units, ...] axes; skipped",
            )
        else:
            self._report("watch_empty_output", f"an empty output {tuple(x.shape)} was skipped")

    def _report(self, kind: str, what: str) -> None:
        self.watcher.problems.report(
            f"{kind}:{self.base.name}",
            f"watch(): layer {self.base.name!r}: {what} (counted per layer as {kind})",
            once_per=kind,
        )


class ActivationWatcher:
    """Dead/undead units, activation variance and non-finite outputs of a model's ReLU layers.

    A `writer.RowSource`: hooks run on the training thread, `collect` on the flush thread.

    Args:
        model: the module the training loop calls; its ReLU-family submodules and activation
            function calls are watched (activation_kinds.py, functional_watch.py).
        step_of: the current training step; a window is stamped with it when it closes.
        problems: where trouble is reported (once per kind) and counted; nothing is raised.
        every: observe every `every`-th training forward pass of `model` (the 1st, the
            every+1-th, ...); eval and no-grad passes are neither observed nor counted.
        window: samples (batch elements) per window; it closes with the batch that reaches it.
            A partial window is never emitted.
        tau: firing threshold (fired = output > tau); None: 0 (activation_kinds.py).
        unit_dim: the output axis that indexes units (1: channels/features; -1: [B, T, F]).
        prefix: prepended to every `named_modules()` name (e.g. "gen." when watching two models).
        low_var_eps: a unit whose window variance is below this counts in `low_var_frac`.
        group: the ranks of a distributed job (None: this process alone). Windows then count
            samples over all ranks (each rank closes after window / world_size) and are merged
            across ranks before rank 0 judges them (see shared_windows.py).
        manual_passes: the caller marks each training pass (`root_pre` before the forward,
            `root_post` after it) instead of the model's forward hooks.
    """

    max_queued = 10_000  # closed windows held for the flush thread before the oldest are dropped

    def __init__(
        self,
        model: nn.Module,
        *,
        step_of: Callable[[], int],
        problems: Problems,
        every: int = 1,
        window: int = 4096,
        tau: float | None = None,
        unit_dim: int = 1,
        prefix: str = "",
        low_var_eps: float = 1e-8,
        group: RankGroup | None = None,
        manual_passes: bool = False,
    ) -> None:
        for arg, value in (("every", every), ("window", window)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be an integer >= 1, got {value!r}")
        if not low_var_eps >= 0:
            raise ValueError(f"low_var_eps must be >= 0, got {low_var_eps!r}")
        self.step_of, self.problems, self.unit_dim = step_of, problems, unit_dim
        self.shared = SharedWindows(group, problems, self.enqueue) if group else None
        self.tracker = PassTracker(self, model, prefix)
        self.gate = Gate(every, problems, self._pass_opens, self._pass_closes)
        if group:
            window = -(-window // group.world_size)
        self._queue: deque[tuple[int, str, torch.Tensor]] = deque()  # step, layer, KEYS + bins
        self._lock = threading.Lock()
        self._handles: list[RemovableHandle] = []
        self.base, self.tau, self.scratch = (
            LayerSettings("", window, 0.0, unit_dim, low_var_eps, False),
            tau,
            Scratch(),
        )
        self.model_name = type(model).__name__
        self.layers = self._install(model, prefix)
        # What marks a training pass: the root module's hooks, or the caller (`manual_passes`:
        # a loop that never calls the model's forward, e.g. Lightning's training_step).
        self.root, self.root_pre, self.root_post = model, self.gate.before, self.gate.after
        self.manual_passes = manual_passes
        if not manual_passes:
            self._handles.append(model.register_forward_pre_hook(self.root_pre))
            self._handles.append(model.register_forward_hook(self.root_post, always_call=True))

    def _install(self, model: nn.Module, prefix: str) -> list[str]:
        """Hook the activation modules (activation_kinds.py); name the look-alikes left out."""
        names, unwatched = [], []
        for name, module in model.named_modules():
            kind = module_kind(module)
            if kind is not None:
                layer = prefix + name or type(module).__name__
                hook = LayerHook(self._settings(layer, kind), self, self.scratch)
                self._handles.append(module.register_forward_hook(hook))
                self.tracker.watched.add(id(module))
                names.append(layer)
            elif is_probed(module) and looks_like_activation(module):
                unwatched.append(f"{prefix + name} ({type(module).__name__})")
        if unwatched:
            self.problems.report(
                "watch_unrecognised_activations",
                f"watch(): {', '.join(unwatched)} look like activations but do not compute a "
                "ReLU-like function (activation_kinds.py); not watched",
            )
        return names

    def _settings(self, layer: str, kind: Kind) -> LayerSettings:
        tau = kind.tau if self.tau is None else float(self.tau)
        nonnegative = kind.nonnegative and tau == 0.0
        return replace(self.base, name=layer, tau=tau, fired_from_mean=nonnegative)

    def functional_site(self, name: str, kind: Kind) -> LayerHook:
        """The hook of a functional activation's call site (made on its first call)."""
        hook = self.tracker.sites.get(name)
        if hook is None:
            hook = self.tracker.sites[name] = LayerHook(
                self._settings(name, kind), self, self.scratch
            )
        return hook

    def _pass_opens(self) -> None:
        """An observed pass starts: meet the other ranks, then track function calls where the
        model makes any, or to find out whether it does (`tracked_pass`)."""
        if self.shared is not None:
            self.shared.sync()
        if self.tracked_pass(self.gate.pass_id):
            self.tracker.start()

    def tracked_pass(self, pass_id: int) -> bool:
        """Tracking an observed pass costs as much as its statistics (a torch function mode and
        a hook on every module call; measured on a 64-256-256-10 MLP: 0.38 of 0.70 ms). A model
        whose first passes made no activation function call is tracked again only every
        `REDISCOVER_EVERY`-th pass (a branch taken rarely); its module hooks reuse the units'
        axis the tracked passes found."""
        return (
            self.tracker.seen_functional
            or pass_id <= DISCOVERY_PASSES
            or pass_id % REDISCOVER_EVERY == 0
        )

    def _pass_closes(self) -> None:
        """An observed pass ended (also by an exception): stop tracking; after the first one, a
        model with no activation at all is said so once and left alone."""
        self.tracker.stop()
        if not self.layers and not self.tracker.seen_functional and self._handles:
            self.problems.report(
                "watch_no_activations",
                f"watch(): {self.model_name} has no ReLU-family modules (ReLU, LeakyReLU, "
                "ReLU6, GELU, SiLU, SmeLU or alike) nor activation calls (F.relu, ...) in its "
                "training pass; no activation statistics",
            )
            self.remove(collective=False)

    def window_full(self, stats: UnitStats) -> None:
        """A call site's window is complete (training thread): judge it, or share it first."""
        if self.shared is None:
            self.enqueue(stats.settings.name, stats.close())
        else:
            self.shared.hold(stats, int(self.step_of()))

    def enqueue(self, layer: str, values: torch.Tensor, step: int | None = None) -> None:
        """Queue a closed window for the flush thread (training thread; no device read)."""
        window = (int(self.step_of()) if step is None else step, layer, values)
        with self._lock:
            full = len(self._queue) >= self.max_queued
            if full:
                self._queue.popleft()
            self._queue.append(window)
        if full:
            self.problems.report(
                "watch_windows_dropped",
                f"watch(): over {self.max_queued} windows wait for the flush; dropping the oldest",
            )

    def collect(self) -> list[dict[str, list[Any]]] | None:
        """Rows of every window closed since the last call (flush thread): `layer_metrics`
        (`KEYS`) and one `arrays` row `act_var_hist` per window."""
        with self._lock:
            windows, self._queue = self._queue, deque()
        if not windows:
            return None
        return window_rows(list(windows), self.problems)

    def remove(self, collective: bool = True) -> None:
        """Remove every hook (idempotent); windows already closed are still collected.

        In a distributed job every rank calls this at the same point; `collective` (a clean
        end) makes the last exchange of windows, skipped after a crash so no rank waits.
        """
        handles, self._handles = self._handles, []
        self.tracker.stop()
        for handle in handles:
            handle.remove()
        shared, self.shared = self.shared, None
        if shared is not None and collective and handles:
            shared.close()
