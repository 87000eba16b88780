"""Lightning 2.x: add one callback to the trainer and the run is on the trainlight grid.

    from trainlight.integrations.lightning import TrainlightCallback
    trainer = L.Trainer(callbacks=[TrainlightCallback(project="mnist", prune_on=["spike"])])

The callback takes `Monitor`'s own keyword arguments (`run`, `project`, `store`, `group`, `tags`,
`config`, `prune_on`, `health`, `flush_interval`, ...) plus `watch_every` (None: no hooks on the
model) and, for Loss Change Allocation, `probe` (`probe(module) -> loss` on a fixed batch, as
`Monitor.lca` takes it) measured every `lca_every` optimiser steps around the optimiser's step
(from `on_before_optimizer_step`, after the gradients are final, to the batch's end).

At fit start, on global rank 0, it opens the run: named after the LightningModule's class unless
`run=` names it, its config the module's hparams (and the datamodule's) with the
trainer's facts, its length `trainer.estimated_stepping_batches`. It watches the module (dead
units, activations, gradient norms, update ratios), and logs at each optimiser step (the step is
`trainer.global_step`):

- `loss`: the loss `training_step` returned (as Lightning normalises it for gradient
  accumulation, times `accumulate_grad_batches` back), as a tensor (no host sync);
- what `self.log` logged in the training step: the `callback_metrics` entries that changed
  since the previous batch (training keys only);
- at each validation end (not the sanity check), the `callback_metrics` entries the validation
  loop changed, e.g. `val_loss`, `val_acc`: the `overfit` signal reads them by name.

A stop asked for on the dashboard or API, or a red `prune_on` signal, sets `trainer.should_stop`,
agreed across ranks as Lightning's own `EarlyStopping` agrees (`reduce_boolean_decision(...,
all=False)`: any rank stopping stops all). The run closes finished at fit end, stopped when it
was stopped, crashed on an exception (`on_exception`).

Only rank 0 writes (other ranks hold no Monitor): under DDP its replica is the model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "trainlight.integrations.lightning needs Lightning 2.x: "
        "pip install 'trainlight[integrations]'"
    ) from exc

from trainlight.collectors import Monitor
from trainlight.collectors.signals.lca import LossChangeAllocator


class TrainlightCallback(pl.Callback):
    def __init__(
        self,
        run: str | None = None,
        *,
        watch_every: int | None = 10,
        probe: Callable[[torch.nn.Module], torch.Tensor] | None = None,
        lca_every: int = 25,
        **monitor: Any,
    ):
        self.run_name = run
        self.watch_every = watch_every
        self.probe, self.lca_every = probe, lca_every
        self.monitor_kwargs = monitor
        self.mon: Monitor | None = None
        self._lca: LossChangeAllocator | None = None
        self._measuring: AbstractContextManager[None] | None = None
        # key -> the callback metric last seen: held, so a new tensor never reuses its id
        self._seen: dict[str, Any] = {}
        self._val_keys: set[str] = set()
        self._logged_step = -1
        self._unwrap: Callable[[], None] | None = None

    # -- open ------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # On every rank: it sets up the data loaders, which may synchronise the ranks.
        total = trainer.estimated_stepping_batches
        if not trainer.is_global_zero or self.mon is not None:
            return
        kwargs = dict(self.monitor_kwargs)
        config = {**run_config(trainer, pl_module), **dict(kwargs.pop("config", None) or {})}
        if "total_steps" not in kwargs and isinstance(total, int) and total > 0:
            kwargs["total_steps"] = total
        self.mon = Monitor(
            self.run_name or type(pl_module).__name__,
            config=config,
            distributed=False,  # rank 0 only: the other ranks never join its collectives
            **kwargs,
        )
        if self.watch_every:
            # training_step, not the module's forward, is a training pass
            self.mon.watch(pl_module, every=self.watch_every, passes="manual")
            self._unwrap = observe_training_steps(pl_module, self.mon)
        if self.probe is not None:
            self._lca = self.mon.lca(pl_module, self.probe, every=self.lca_every)
        self._seen = dict(trainer.callback_metrics)

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        if self.mon is not None:  # manual optimisation: the backward inside training_step
            self.mon.end_pass()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        if self._lca is not None and self._measuring is None:
            self._measuring = self._lca.measure(trainer.global_step + 1)  # the step it makes
            self._measuring.__enter__()  # θ before the step; left at the batch's end

    # -- log -------------------------------------------------------------------------------
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._measuring is not None:
            measuring, self._measuring = self._measuring, None
            measuring.__exit__(None, None, None)
        mon = self.mon
        if mon is not None and trainer.global_step != self._logged_step:  # an optimiser step
            self._logged_step = step = trainer.global_step
            values = self._changed(trainer.callback_metrics, self._val_keys)
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if isinstance(loss, torch.Tensor):
                scale = trainer.accumulate_grad_batches  # a multiply costs 8 µs: only if needed
                values["loss"] = loss.detach() * scale if scale != 1 else loss.detach()
            if values:
                mon.log(step, **values)
        self._agree_on_stop(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._seen = dict(trainer.callback_metrics)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        values = self._changed(trainer.callback_metrics, set())
        self._val_keys |= set(values)
        if trainer.sanity_checking:
            return
        if self.mon is not None and values:
            self.mon.log(trainer.global_step, **values)
        self._agree_on_stop(trainer)

    def _changed(self, metrics: Mapping[str, Any], skip: set[str]) -> dict[str, Any]:
        """The metrics whose value object changed since the last look (Lightning replaces a
        key's tensor when it is logged again), less `skip`; remembers them."""
        out = {}
        for key, value in metrics.items():
            if self._seen.get(key) is not value:
                self._seen[key] = value
                if key not in skip:
                    out[key] = value
        return out

    def _agree_on_stop(self, trainer: pl.Trainer) -> None:
        wants = self.mon is not None and self.mon.should_stop()
        if trainer.strategy.reduce_boolean_decision(wants, all=False):
            trainer.should_stop = True

    # -- close -----------------------------------------------------------------------------
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close(None)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._close("stopped" if isinstance(exception, KeyboardInterrupt) else "crashed")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._close(None)

    def _close(self, status: str | None) -> None:
        if self._unwrap is not None:
            unwrap, self._unwrap = self._unwrap, None
            unwrap()
        if self.mon is not None:
            mon, self.mon = self.mon, None
            mon.close(status)


def observe_training_steps(pl_module: pl.LightningModule, mon: Monitor) -> Callable[[], None]:
    """Make each `training_step` call a training pass of the watched module (`begin_pass`
    before it, `end_pass` after it, also when it raises); returns what undoes it.

    Why wrap the method rather than use the hooks around it: `on_train_batch_start` comes before
    Lightning's optimiser closure and profiler contexts, and an observed pass tracks every torch
    call made inside it; the method alone is the pass, and costs nothing more when unobserved.
    The wrapper is an attribute of this instance only (DDP's redirection looks it up there too).
    """
    inner = pl_module.training_step

    @functools.wraps(inner)
    def training_step(*args: Any, **kwargs: Any) -> Any:
        mon.begin_pass()
        try:
            return inner(*args, **kwargs)
        finally:
            mon.end_pass()  # a no-op where on_before_backward already ended it

    pl_module.training_step = training_step  # type: ignore[method-assign]

    def unwrap() -> None:
        if pl_module.__dict__.get("training_step") is training_step:
            del pl_module.training_step

    return unwrap


def run_config(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """The run's config: the module's (and datamodule's) hyperparameters and the trainer's
    facts that change a run's outcome."""
    config: dict[str, Any] = dict(pl_module.hparams)
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None:
        config.update({f"data.{k}": v for k, v in dict(datamodule.hparams).items()})
    config["trainer"] = {
        "max_epochs": trainer.max_epochs,
        "max_steps": trainer.max_steps,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "precision": str(trainer.precision),
        "world_size": trainer.world_size,
        "optimizers": [type(o).__name__ for o in trainer.optimizers],
    }
    return config
