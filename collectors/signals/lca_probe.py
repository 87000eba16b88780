"""Run the user's probe loss at chosen parameter values without disturbing training.

LCA needs the probe gradient at θ_t, at θ_{t+1} and between them, while the training state must
come out of the measurement exactly as the optimizer left it. How each part of that state is kept:

- Parameters are never written. Each pass runs `probe_loss(model)` under
  `torch.func.functional_call`, which swaps the module attributes for our own leaf tensors for the
  duration of the forward pass (and restores them even if it raises). The leaves are detached
  aliases of buffers we own (or of the live parameters, for θ_{t+1}: no copy), so θ_{t+1} is
  restored bit for bit by construction.
- `.grad` is never touched: backward runs with `inputs=` our leaves, so gradients accumulate only
  into them, never into the parameters' `.grad` (nor into any other tensor the probe reaches),
  and hooks the user registered on the parameters (optimizer-in-backward, DDP) do not fire.
  Module-level hooks do fire: the probe is an ordinary forward pass of the model.
- Mode: every module is put in eval mode for the probe passes, by setting each module's
  `training` flag (not by calling `.eval()`, which user modules may override), and each flag is
  restored to what it was, so deliberately frozen submodules stay frozen. Why eval: it is the one
  mode in which the probe loss is a deterministic function of θ. BatchNorm uses (and does not
  update) its running statistics, dropout is off, and `Monitor.watch` hooks ignore the passes.
  Train-mode dropout would draw a fresh mask per pass, making the integrand noise; train-mode
  BatchNorm would update running stats (restoring them would cost a copy of every buffer). The
  price: the allocated loss is that of the network as evaluated, with the running statistics
  of the moment (they do not change during the measurement, so the integral is consistent).
- RNG: each pass runs inside `torch.random.fork_rng` over the CPU and the CUDA devices of the
  parameters, so a probe that draws random numbers sees the same numbers in every pass (again a
  deterministic integrand) and the training's generators are left exactly where they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from trainlight.collectors.signals.simpson import Consume, Evaluate

ProbeLoss = Callable[[nn.Module], torch.Tensor]


class _Bound(nn.Module):
    """`probe_loss(model)` as a module, so `functional_call` can reparametrize `model` for it."""

    def __init__(self, model: nn.Module, probe_loss: ProbeLoss) -> None:
        super().__init__()
        self.model = model
        self.probe_loss = probe_loss

    def forward(self) -> torch.Tensor:
        return self.probe_loss(self.model)


@contextmanager
def probe_mode(model: nn.Module) -> Iterator[None]:
    """Every module of `model` in eval mode inside the block; each module's own flag restored."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        for module, _ in flags:
            module.training = False
        yield
    finally:
        for module, flag in flags:
            module.training = flag


class Probe:
    """Evaluates `probe_loss(model)` and its gradient at parameter values given per pass."""

    def __init__(self, model: nn.Module, probe_loss: ProbeLoss) -> None:
        self._bound = _Bound(model, probe_loss)

    def evaluator(self, names: Sequence[str]) -> Evaluate:
        """An `Evaluate` (see simpson.py) for the parameters called `names` in the model."""
        keys = [f"model.{name}" for name in names]

        def evaluate(values: Sequence[torch.Tensor], consume: Consume) -> torch.Tensor:
            devices = sorted({v.device.index or 0 for v in values if v.device.type == "cuda"})
            with torch.random.fork_rng(devices=devices):
                return self._run(keys, values, consume)

        return evaluate

    def _run(
        self, keys: list[str], values: Sequence[torch.Tensor], consume: Consume
    ) -> torch.Tensor:
        leaves = [value.detach().requires_grad_(True) for value in values]
        delivered = [False] * len(leaves)
        handles = [
            leaf.register_post_accumulate_grad_hook(_deliver(j, consume, delivered))
            for j, leaf in enumerate(leaves)
        ]
        try:
            with torch.enable_grad():
                loss = _scalar(
                    functional_call(self._bound, dict(zip(keys, leaves, strict=True)), ())
                )
                torch.autograd.backward(loss, inputs=leaves)
        finally:
            for handle in handles:
                handle.remove()
        for j, leaf in enumerate(leaves):
            if not delivered[j]:  # the probe does not depend on this tensor: zero gradient
                consume(j, torch.zeros_like(leaf, requires_grad=False))
        return loss.detach()


def _deliver(j: int, consume: Consume, delivered: list[bool]) -> Callable[[torch.Tensor], None]:
    """Hand leaf j's gradient over as soon as backward has accumulated it, then drop it."""

    def hook(leaf: torch.Tensor) -> None:
        grad = leaf.grad
        leaf.grad = None
        if grad is not None:
            consume(j, grad.to_dense() if grad.is_sparse else grad)
            delivered[j] = True

    return hook


def _scalar(loss: Any) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"probe_loss(model) must return a Tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"probe_loss(model) must return a scalar, got shape {tuple(loss.shape)}")
    if not loss.requires_grad:
        raise ValueError("probe_loss(model) does not depend on the model's trainable parameters")
    return loss.reshape(())
