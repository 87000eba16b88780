"""The health signals trainlight knows, in the order the grid shows them.

Every place that names signals (the grid's badge columns and legend, the terminal legend, the
API's health fields, the run page's panels, the choices `prune_on` accepts) asks this registry
at call time, so a registered signal appears everywhere with no other edit.
"""

from __future__ import annotations

from trainlight.collectors.health.rules import (
    catch,
    dead_relu,
    gradients,
    lca,
    nonfinite,
    overfit,
    progress,
    runaway_judge,
    spike,
)
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import shapes_legend

BUILTIN = (
    spike.SPEC,
    overfit.SPEC,
    gradients.SPEC,
    progress.SPEC,
    catch.SPEC,
    runaway_judge.SPEC,
    dead_relu.SPEC,
    lca.SPEC,
    nonfinite.SPEC,
)
_REGISTRY: dict[str, SignalSpec] = {spec.name: spec for spec in BUILTIN}


# Keys of a saved health state that are not a signal's window (judge.py's `Judge.key`).
_STATE_FIELDS = frozenset({"hysteresis", "pending", "roles", "settings"})


def register(spec: SignalSpec) -> SignalSpec:
    """Add a signal after the others (or replace one of the same name in place)."""
    if spec.judge is not None and spec.judge.key() in _STATE_FIELDS:
        raise ValueError(f"{spec.judge.key()!r} is taken in the saved health state")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a signal (a test that registered a toy one cleans up with this)."""
    if name in {spec.name for spec in BUILTIN}:
        raise ValueError(f"{name!r} is a built-in signal")
    _REGISTRY.pop(name, None)


def specs() -> tuple[SignalSpec, ...]:
    return tuple(_REGISTRY.values())


def signal_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def spec_of(name: str) -> SignalSpec | None:
    return _REGISTRY.get(name)


def legend() -> str:
    """The key under a text table whose badge column has one shape per signal."""
    return f"health: {' '.join(signal_names())}  ({shapes_legend()})"


def prunable() -> tuple[str, ...]:
    """The signals `prune_on` may name."""
    return tuple(spec.name for spec in _REGISTRY.values() if spec.may_prune)
