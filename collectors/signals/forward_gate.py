"""Which forward passes of a watched model are observed, and the one point each pass offers.

`watch(model, every=N)` observes every N-th TRAINING pass (module in training mode, grad enabled):
eval and no-grad passes (validation, a GAN's no-grad generator pass) neither count nor are
observed. The root module's pre-hook opens the gate and its post-hook closes it, so a ReLU called
outside the model's forward (activation checkpointing's recomputation) is not observed twice.
The start of an observed pass is also where a distributed job's ranks meet (`on_open`): every
rank reaches it in the same order, on the training thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainlight.collectors.problems import Problems

IDLE_PASSES_WARNING = 50  # untrained passes before the first training pass that earn a warning


class Gate:
    """Open during every `every`-th training forward pass of the watched model (root hooks).

    `on_open` runs at the start of each observed pass (a point every rank of a distributed job
    reaches in the same order), `on_close` at its end, also when the forward raised. Passes in
    eval mode or without grad are counted as idle until
    the first training pass: many of them mean nothing will ever be observed, which is said once
    (unless `problems` is None: a second gate on the same model, whose first one says it).
    """

    def __init__(
        self,
        every: int,
        problems: Problems | None,
        on_open: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.every, self.passes, self.open = every, 0, False
        self.on_close = on_close
        self.pass_id = 0  # observed passes so far: tells a module's repeated calls apart
        self.problems, self.on_open, self.idle = problems, on_open, 0

    def before(self, module: nn.Module, args: Any) -> None:
        training = module.training and torch.is_grad_enabled()
        self.open = training and self.passes % self.every == 0
        self.passes += training
        self.pass_id += self.open
        if not self.passes and self.problems is not None:
            self._idle_pass(module, self.problems)
        if self.open and self.on_open is not None:
            self.on_open()

    def after(self, module: nn.Module, args: Any, output: Any) -> None:
        was_open, self.open = self.open, False  # nothing outside the model's forward
        if was_open and self.on_close is not None:
            self.on_close()

    def _idle_pass(self, module: nn.Module, problems: Problems) -> None:
        self.idle += 1
        if self.idle >= IDLE_PASSES_WARNING:  # a few (a sanity check, a no-grad GAN pass) are fine
            problems.report(
                "watch_idle_passes",
                f"watch(): {self.idle} forward passes of {type(module).__name__} ran in eval "
                "mode or under torch.no_grad() and none in training; only training passes are "
                "observed (further idle passes are counted as watch_idle_passes)",
            )
