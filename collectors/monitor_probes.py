"""The `Monitor` methods that attach the optional signals' probes: `watch` (activations,
gradients and update ratios), runaway (reference and generated outputs), replica predictions,
loss-surface slices and Loss Change Allocation.

A base class of `Monitor` (monitor.py keeps the run's lifecycle and the hot path); each probe is
a row source of the run's flush thread, created on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from trainlight.collectors.distributed import RankGroup, unwrap
from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.activations import ActivationWatcher
from trainlight.collectors.signals.gradients import GradientWatcher
from trainlight.collectors.signals.landscape_probe import LandscapeProbe
from trainlight.collectors.signals.lca import LossChangeAllocator
from trainlight.collectors.signals.predictions import PredictionRecorder
from trainlight.collectors.signals.runaway import RunawayTracker
from trainlight.collectors.writer import RowSource


class SignalProbes:
    problems: Problems
    _leader: bool
    _last_step: int
    _ranks: RankGroup | None
    _watchers: list[ActivationWatcher | GradientWatcher]
    _runaway: RunawayTracker | None
    _predictions: PredictionRecorder | None
    _landscapes: list[LandscapeProbe]

    def add_source(self, source: RowSource) -> None:
        raise NotImplementedError  # Monitor's: the flush thread collects the source's rows

    def watch(
        self,
        model: torch.nn.Module,
        every: int = 10,
        *,
        window: int = 4096,
        tau: float | None = None,
        unit_dim: int = 1,
        prefix: str = "",
        gradients: bool = True,
        passes: str = "forward",
    ) -> None:
        """Hook the ReLU-family activations of `model`: dead/undead units, variance, non-finite;
        and (`gradients`) each layer's gradient norm and update/weight ratio (gradients.py).

        Activation modules (recognised by what they compute) and activation function calls
        inside the forward (`F.relu(self.c1(x))`: row `c1→relu`) are both watched.
        Observes every `every`-th training forward pass (eval and no_grad passes never count);
        a window closes after `window` samples. `unit_dim` is the axis of units in activation
        outputs: 1 for conv channels and [batch, features]; -1 for [batch, seq, features]. An
        activation of a Linear's output always uses its features (the last axis).
        `passes`: what marks a training pass, "forward" (the model's forward) or "manual"
        (`begin_pass()` before the forward and `end_pass()` after it: a framework whose loop
        never calls the watched module's forward, such as Lightning's `training_step`).
        """
        if passes not in ("forward", "manual"):
            raise ValueError(f"passes must be 'forward' or 'manual', got {passes!r}")
        manual = passes == "manual"
        watcher = ActivationWatcher(
            unwrap(model),
            step_of=lambda: self._last_step,
            problems=self.problems,
            every=every,
            window=window,
            tau=tau,
            unit_dim=unit_dim,
            prefix=prefix,
            group=self._ranks,
            manual_passes=manual,
        )
        self._watchers.append(watcher)
        self.add_source(watcher)
        if gradients:
            grads = GradientWatcher(
                unwrap(model),
                step_of=lambda: self._last_step,
                problems=self.problems,
                every=every,
                prefix=prefix,
                manual_passes=manual,
            )
            self._watchers.append(grads)
            self.add_source(grads)

    def begin_pass(self) -> None:
        """A training pass of the models watched with `passes="manual"` begins (before its
        forward). Costs what the forward pre-hook costs; no-op for other watches."""
        for watcher in self._watchers:
            if watcher.manual_passes:
                watcher.root_pre(watcher.root, ())

    def end_pass(self) -> None:
        """... and ends (after its forward, before its backward)."""
        for watcher in self._watchers:
            if watcher.manual_passes:
                watcher.root_post(watcher.root, (), None)

    def unwatch(self) -> None:
        """Remove every hook `watch` installed (also done on close)."""
        for watcher in self._watchers:
            watcher.remove()

    def reference(self, real: torch.Tensor) -> None:
        """Per-sample means of real data: what generated outputs must converge to (`runaway`)."""
        self._runaway_tracker().reference(real)

    def outputs(self, step: int, generated: torch.Tensor) -> None:
        """Per-sample means of a generated batch, for `runaway`. No device sync."""
        self._runaway_tracker().observe(int(step), generated)

    def predictions(
        self,
        step: int,
        probs: torch.Tensor,
        every: int = 50,
        labels: torch.Tensor | None = None,
    ) -> None:
        """A fixed probe set's predicted probabilities ([examples] or [examples, classes], at most
        4,096 examples, the same examples in the same order on every replica), kept every
        `every` steps (fixed by the first call) for the reproducibility view. `labels`: the
        examples' true classes ([examples] integers), kept once: the relative prediction
        difference is taken on their probability (without them, on the top class). No sync."""
        if not self._leader:
            return
        if self._predictions is None:
            self._predictions = PredictionRecorder(self.problems, every=every)
            self.add_source(self._predictions)
        self._predictions.observe(step, probs, labels)

    def landscape(
        self,
        model: torch.nn.Module,
        probe_loss: Callable[[torch.nn.Module], torch.Tensor],
        every: int = 100,
        points: int = 21,
        span: float = 1.0,
        seed: int = 0,
    ) -> LandscapeProbe:
        """A 1-D loss slice every `every` steps along the run's random direction (drawn once
        from `seed`), filter-normalised to the weights of that step.

        Taken inside `log()` when its step is a multiple of `every`: `points` forward passes of
        `probe_loss(model)` (a scalar on a fixed batch), parameters and training state untouched.
        The seed, span and points are recorded, so `trainlight landscape` rebuilds the direction.
        """
        probe = LandscapeProbe(
            unwrap(model),
            probe_loss,
            self.problems,
            every=every,
            points=points,
            span=span,
            seed=seed,
        )
        if self._leader:
            self._landscapes.append(probe)
            self.add_source(probe)
        return probe

    def _runaway_tracker(self) -> RunawayTracker:
        if self._runaway is None:
            self._runaway = RunawayTracker(problems=self.problems)
            self.add_source(self._runaway)
        return self._runaway

    def lca(
        self,
        model: torch.nn.Module,
        probe_loss: Callable[[torch.nn.Module], torch.Tensor],
        every: int = 25,
        **settings: Any,
    ) -> LossChangeAllocator:
        """Loss Change Allocation every `every` steps on a fixed probe batch.

        `probe_loss(model)` returns a scalar loss on a batch it closes over. Use the result as
        `with lca.measure(step): optimizer.step()`. Settings: abs_tol, rel_tol, max_intervals,
        max_frames, frame_cells (see trainlight.collectors.signals.lca).
        """
        allocator = LossChangeAllocator(
            unwrap(model),
            probe_loss,
            every=every,
            problems=self.problems,
            active=self._leader,
            **settings,
        )
        self.add_source(allocator)
        return allocator
