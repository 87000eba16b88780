"""The header a Monitor starts its run with: what the user said about the run, made storable.

Built (and validated) before anything else happens, so a bad argument fails at `Monitor(...)`
with the bad value in the message, before any thread, file or collective is started. Config
values become JSON-ready data, and only health settings that differ from the defaults travel.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.schema import RunHeader, process_namespace


def describe_run(
    run_id: str,
    name: str,
    *,
    project: str,
    group: str,
    tags: Iterable[str],
    config: Mapping[str, Any] | None,
    health: HealthSettings | Mapping[str, Any] | None,
    prune_on: Iterable[str],
    total_steps: int | None = None,
) -> RunHeader:
    """The run's first header (seq 0, status running); ValueError naming a bad argument."""
    return RunHeader(
        run_id=run_id,
        seq=0,
        name=str(name),
        project=str(project),
        group=str(group),
        tags=tuple(str(t) for t in tags),
        config=jsonable(config or {}),
        host=socket.gethostname(),
        pid=os.getpid(),
        pid_namespace=process_namespace(),
        started_at=time.time(),
        health=health_overrides(health),
        prune_on=tuple(prune_on),
        total_steps=total_steps,
    ).validated()


def health_overrides(health: HealthSettings | Mapping[str, Any] | None) -> dict[str, Any]:
    """Only the settings that differ from the defaults travel in the header."""
    if health is None:
        return {}
    chosen = health if isinstance(health, HealthSettings) else HealthSettings.from_dict(health)
    defaults = HealthSettings().to_dict()
    return {k: v for k, v in chosen.to_dict().items() if defaults[k] != v}


def jsonable(config: Mapping[str, Any]) -> dict[str, Any]:
    """Config as JSON-ready data: tensors and other objects become numbers or their repr."""
    out: dict[str, Any] = {}
    for key, value in dict(config).items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        elif isinstance(value, Mapping):
            value = jsonable(value)
        elif not isinstance(value, (str, int, float, bool, list, tuple, type(None))):
            value = repr(value)
        out[str(key)] = value
    return out
