"""Keras 3 on the torch backend: add one callback to `fit`, and the run is on the trainlight grid.

    os.environ["KERAS_BACKEND"] = "torch"  # before the first `import keras`
    from trainlight.integrations.keras import TrainlightCallback
    model.fit(x, y, validation_data=(xv, yv),
              callbacks=[TrainlightCallback(project="digits", prune_on=["spike"])])

The callback takes `Monitor`'s keyword arguments (`run`, `project`, `store`, `group`, `tags`,
`config`, `prune_on`, `health`, ...) plus `watch_every` (None: no hooks). At train begin it opens
the run (named after the model unless `run=` names it; config: the optimiser, its learning rate,
epochs and steps per epoch; length epochs x steps) and watches the model, which on the torch
backend is a `torch.nn.Module` (dead units, activations, gradient norms; update ratios from the
parameters' change between gated passes, as Keras' optimisers are not `torch.optim`'s).

What is recorded, at step = the number of training batches seen so far:

- `loss`: the batch's own loss. Keras' batch logs hold a running mean over the epoch, which
  smooths a spike away and carries a NaN to every later batch; so the callback reads the loss
  where `train_step` computes it (it wraps the model's `compute_loss` for the length of `fit`,
  keeping the tensor: no host sync). With `steps_per_execution` > 1, the mean of those steps;
- at each epoch end, the epoch's logs: validation keys as Keras names them (`val_loss`,
  `val_accuracy`: `overfit` reads them), training metrics prefixed `epoch/` (`epoch/accuracy`:
  running means, not per-batch values, so they never stand in for `loss`).

A stop asked for on the dashboard or a red `prune_on` signal sets `model.stop_training`, which
Keras checks after every batch. The run closes at train end: finished, or stopped. Keras has no
exception hook: a crash inside `fit` closes the run as crashed at interpreter exit (the
Monitor's own exit handler), or call `callback.close("crashed")` in your `except`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

if "keras" not in sys.modules:  # the backend is chosen once, at the first import
    os.environ.setdefault("KERAS_BACKEND", "torch")
try:
    import keras
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "trainlight.integrations.keras needs Keras 3: pip install 'trainlight[integrations]'"
    ) from exc
if keras.backend.backend() != "torch":  # pragma: no cover - depends on the environment
    raise ImportError(
        f"trainlight.integrations.keras needs Keras' torch backend, not "
        f"{keras.backend.backend()!r}: set KERAS_BACKEND=torch before importing keras"
    )

from trainlight.collectors import Monitor

VALIDATION_PREFIX = "val_"
EPOCH_PREFIX = "epoch/"


class TrainlightCallback(keras.callbacks.Callback):
    def __init__(self, run: str | None = None, *, watch_every: int | None = 10, **monitor: Any):
        super().__init__()
        self.run_name = run
        self.watch_every = watch_every
        self.monitor_kwargs = monitor
        self.mon: Monitor | None = None
        self.step = 0  # training batches seen, across epochs
        self._batch_losses: list[torch.Tensor] = []
        self._in_training_batch = False
        self._wrapped: keras.Model | None = None

    # -- open ------------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.mon is not None:
            return
        model = self.model
        kwargs = dict(self.monitor_kwargs)
        config = {**run_config(model, self.params or {}), **dict(kwargs.pop("config", None) or {})}
        total = _planned_steps(self.params or {})
        if "total_steps" not in kwargs and total:
            kwargs["total_steps"] = total
        self.mon = Monitor(self.run_name or model.name, config=config, **kwargs)
        if self.watch_every:
            self.mon.watch(model, every=self.watch_every)
        self._wrap_compute_loss(model)

    def _wrap_compute_loss(self, model: keras.Model) -> None:
        """Keep each training batch's loss tensor as `train_step` computes it (see the module's
        docstring). An instance attribute, removed at train end; Keras' own signature check of
        `compute_loss` was made at compile time, so the wrapper passes every argument on."""
        original = model.compute_loss

        def compute_loss(*args: Any, **kwargs: Any) -> Any:
            loss = original(*args, **kwargs)
            if self._in_training_batch and kwargs.get("training", True):
                self._batch_losses.append(loss.detach())
            return loss

        object.__setattr__(model, "compute_loss", compute_loss)
        self._wrapped = model

    # -- log -------------------------------------------------------------------------------
    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._in_training_batch = True

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._in_training_batch = False
        losses, self._batch_losses = self._batch_losses, []
        self.step += 1
        mon = self.mon
        if mon is None:
            return
        if losses:
            loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
            mon.log(self.step, loss=loss)
        if mon.should_stop():
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.mon is None or not logs:
            return
        values = {
            key if key.startswith(VALIDATION_PREFIX) else EPOCH_PREFIX + key: value
            for key, value in logs.items()
            if isinstance(value, (int, float, torch.Tensor))
        }
        values["epoch"] = epoch
        self.mon.log(self.step, **values)

    # -- close -----------------------------------------------------------------------------
    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.close()

    def close(self, status: str | None = None) -> None:
        """End the run (finished or stopped; pass "crashed" after an exception) and unwrap."""
        if self._wrapped is not None:
            self._wrapped.__dict__.pop("compute_loss", None)
            self._wrapped = None
        if self.mon is not None:
            mon, self.mon = self.mon, None
            mon.close(status)


def run_config(model: keras.Model, params: dict[str, Any]) -> dict[str, Any]:
    """The run's config: the optimiser and its learning rate, and fit's plan."""
    config: dict[str, Any] = {"model": model.name, "parameters": model.count_params()}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        config["optimizer"] = type(optimizer).__name__
        rate: Any = getattr(optimizer, "learning_rate", None)
        try:
            config["learning_rate"] = float(rate)
        except (TypeError, ValueError):  # a schedule has no single rate: name it
            config["learning_rate"] = type(rate).__name__
    config.update({k: params[k] for k in ("epochs", "steps") if params.get(k) is not None})
    return config


def _planned_steps(params: dict[str, Any]) -> int | None:
    epochs, steps = params.get("epochs"), params.get("steps")
    return epochs * steps if isinstance(epochs, int) and isinstance(steps, int) else None
