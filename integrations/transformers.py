"""Hugging Face `Trainer` (transformers 5.x): one callback, and the run is on the trainlight grid.

    from trainlight.integrations.transformers import TrainlightCallback
    trainer = Trainer(model, args, train_dataset=..., eval_dataset=...,
                      callbacks=[TrainlightCallback(project="lm", prune_on=["spike"])])

or, once this module is imported, `TrainingArguments(report_to="trainlight")` (it registers
itself in transformers' table of reporting integrations; Monitor's defaults then apply).

The callback takes `Monitor`'s keyword arguments (`run`, `project`, `store`, `group`, `tags`,
`config`, `prune_on`, `health`, ...) plus `watch_every` (None: no hooks). At train begin it opens
the run (named `args.run_name`, else after the model's class; config: the training arguments and
the model's config; length `state.max_steps`) and watches the model. At each optimiser step
(`state.global_step`) it logs:

- `loss`: the mean of the step's micro-batch losses, read from the model's output (`.loss`) by a
  forward hook on training passes: exact, and non-finite values included. `on_log`'s `loss` is
  an average since the last log, and with `logging_nan_inf_filter` (on by default) a NaN or Inf
  step is replaced there by that average, which would hide exactly what `nonfinite` and `spike`
  must see. A model whose output carries no loss (a custom `compute_loss`) falls back to
  `on_log`'s loss, with one warning that non-finite steps may then be filtered;
- what `on_log` reports besides (`learning_rate`, the global `grad_norm`, ...);
- at each evaluation, its metrics (`eval_loss`, `eval_accuracy`, ...): `overfit` reads them.

Every process holds the Monitor (only world process zero writes), so a stop asked for on the
dashboard or a red `prune_on` signal reaches `control.should_training_stop` on every process at
the same step (`Monitor.should_stop()` agrees across ranks). The run closes at train end:
finished, or stopped. Transformers has no exception hook: a crash closes the run as crashed at
interpreter exit (the Monitor's own exit handler), or call `callback.close("crashed")`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.integrations import integration_utils
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "trainlight.integrations.transformers needs transformers 5.x: "
        "pip install 'trainlight[integrations]'"
    ) from exc

from trainlight.collectors import Monitor

EVAL_PREFIX = "eval_"
# on_log keys that are bookkeeping, not signals
_NOT_LOGGED = {"epoch", "total_flos", "train_runtime", "train_samples_per_second"}


class TrainlightCallback(TrainerCallback):
    def __init__(self, run: str | None = None, *, watch_every: int | None = 10, **monitor: Any):
        self.run_name = run
        self.watch_every = watch_every
        self.monitor_kwargs = monitor
        self.mon: Monitor | None = None
        self._losses: list[torch.Tensor] = []  # the micro-batch losses of the current step
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self._loss_from_model = False

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if self.mon is not None:
            return
        kwargs_ = dict(self.monitor_kwargs)
        config = {**run_config(args, model), **dict(kwargs_.pop("config", None) or {})}
        if "total_steps" not in kwargs_ and state.max_steps > 0:
            kwargs_["total_steps"] = state.max_steps
        name = self.run_name or _run_name(args, model)
        self.mon = Monitor(name, config=config, **kwargs_)
        if model is not None:
            if self.watch_every:
                self.mon.watch(model, every=self.watch_every)
            self._hook = model.register_forward_hook(self._model_output)

    def _model_output(self, module: nn.Module, args: Any, output: Any) -> None:
        """A training forward pass's loss, from the model's output (no host read)."""
        if not (module.training and torch.is_grad_enabled()):
            return
        loss = output.get("loss") if isinstance(output, Mapping) else None
        if loss is None and isinstance(output, tuple) and output:
            loss = output[0] if isinstance(output[0], torch.Tensor) else None
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._losses.append(loss.detach().reshape(()))
            self._loss_from_model = True

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        mon = self.mon
        if mon is None:
            return
        losses, self._losses = self._losses, []
        if losses:
            loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
            mon.log(state.global_step, loss=loss)
        if mon.should_stop():  # every process, every step: the same answer at the same step
            control.should_training_stop = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.mon is None or not logs:
            return
        values = {
            k: v
            for k, v in logs.items()
            if k not in _NOT_LOGGED
            and not k.startswith(EVAL_PREFIX)  # on_evaluate logs those
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
        }
        if self._loss_from_model:
            values.pop("loss", None)  # the average of what the hook logged exactly
        elif "loss" in values:
            self.mon.problems.report(
                "hf_loss_from_logs",
                "trainlight: the model's output has no loss, so `loss` comes from on_log, where "
                "logging_nan_inf_filter (on by default) replaces NaN/Inf steps; set "
                "logging_nan_inf_filter=False to have them judged",
            )
        if values:
            self.mon.log(state.global_step, **values)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.mon is None or not metrics:
            return
        values = {
            k: v
            for k, v in metrics.items()
            if k.startswith(EVAL_PREFIX)
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
            and not k.endswith(("_runtime", "_per_second"))
        }
        if values:
            self.mon.log(state.global_step, **values)
        if self.mon.should_stop():
            control.should_training_stop = True

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.close()

    def close(self, status: str | None = None) -> None:
        """End the run (at train end; call it with "crashed" after a failed `train()`)."""
        hook, self._hook = self._hook, None
        if hook is not None:
            hook.remove()
        mon, self.mon = self.mon, None
        if mon is not None:
            mon.close(status)


def _run_name(args: TrainingArguments, model: nn.Module | None) -> str:
    name = getattr(args, "run_name", None)
    if name and name != args.output_dir:  # transformers defaults run_name to output_dir
        return str(name)
    return type(model).__name__ if model is not None else "transformers run"


def run_config(args: TrainingArguments, model: nn.Module | None) -> dict[str, Any]:
    """The training arguments (as transformers sanitises them for loggers) and the model's
    config, under `model`."""
    config: dict[str, Any] = dict(args.to_sanitized_dict())
    model_config = getattr(model, "config", None)
    if model_config is not None and hasattr(model_config, "to_diff_dict"):
        config["model"] = model_config.to_diff_dict()
    return config


# `TrainingArguments(report_to="trainlight")`: transformers looks reporters up in this table.
integration_utils.INTEGRATION_TO_CALLBACK.setdefault("trainlight", TrainlightCallback)
