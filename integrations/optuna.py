"""Optuna: prune the trials whose trainlight run turned red, in the sweep you already run.

    from trainlight.integrations.optuna import HealthPruner, monitor_for

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        with monitor_for(trial, project="sweep") as mon:
            for step in range(steps):
                loss = train_step(lr)
                mon.log(step, loss=loss)
                trial.report(loss.item(), step)
                if trial.should_prune():  # as Optuna documents
                    raise optuna.TrialPruned()
        return evaluate()

    study = optuna.create_study(pruner=HealthPruner(optuna.pruners.MedianPruner()))

`monitor_for(trial, **monitor_kwargs)` opens the trial's `Monitor`: the run is named
"<study> trial <number>" in the group of the study, its config the trial's parameters, and, when
the study's pruner is a `HealthPruner`, its `prune_on` the pruner's signals. The run id is stored
as the trial's user attribute `trainlight_run_id`. The run closes finished, stopped (the trial
was pruned) or crashed.

`HealthPruner(inner=None, signals=...)` prunes a trial whose run was asked to stop: one of
`signals` turned red (judged next to the training, every flush) or someone pressed stop on the
dashboard. Otherwise it defers to `inner` (e.g. `MedianPruner`), or never prunes. The check costs
no I/O: the trial's Monitor lives in the process that calls `trial.should_prune()`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    import optuna
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "trainlight.integrations.optuna needs Optuna: pip install 'trainlight[integrations]'"
    ) from exc

from trainlight.collectors import Monitor
from trainlight.integrations.prune_signals import DEFAULT_SIGNALS

RUN_ID_ATTR = "trainlight_run_id"

# run id -> the open Monitor of a trial in this process (monitor_for adds, close removes)
_open: weakref.WeakValueDictionary[str, Monitor] = weakref.WeakValueDictionary()


class HealthPruner(optuna.pruners.BasePruner):
    def __init__(
        self,
        inner: optuna.pruners.BasePruner | None = None,
        signals: Iterable[str] = DEFAULT_SIGNALS,
    ) -> None:
        self.inner = inner
        self.signals = tuple(signals)
        if not self.signals:
            raise ValueError("signals must name at least one trainlight signal")

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        mon = _open.get(str(trial.user_attrs.get(RUN_ID_ATTR, "")))
        if mon is not None and mon.should_stop():
            return True
        return self.inner.prune(study, trial) if self.inner is not None else False


@contextmanager
def monitor_for(trial: optuna.trial.Trial, **monitor: Any) -> Iterator[Monitor]:
    """The trial's Monitor (see the module's docstring), closed when the block ends."""
    study = trial.study
    pruner = study.pruner
    kwargs: dict[str, Any] = {
        "group": study.study_name,
        "config": {**trial.params, "optuna": {"study": study.study_name, "trial": trial.number}},
        **monitor,
    }
    if isinstance(pruner, HealthPruner):
        kwargs.setdefault("prune_on", pruner.signals)
    run = kwargs.pop("run", None) or f"{study.study_name} trial {trial.number}"
    mon = Monitor(run, **kwargs)
    trial.set_user_attr(RUN_ID_ATTR, mon.run_id)
    _open[mon.run_id] = mon
    try:
        yield mon
    except optuna.TrialPruned:
        decided_by = pruner.inner if isinstance(pruner, HealthPruner) else pruner
        mon.close("stopped", reason=f"pruned by Optuna's {type(decided_by).__name__}")
        raise
    except BaseException:
        mon.close("crashed")
        raise
    else:
        mon.close()
    finally:
        _open.pop(mon.run_id, None)
