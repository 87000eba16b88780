"""Which modules and function calls `watch()` treats as ReLU-family activations, and how.

Recognised by what they compute, not by their class: real code spells ReLU as `nn.ReLU`, as
`F.relu(...)`, or as its own classes (Hugging Face's `GELUActivation`, `NewGELUActivation`,
`QuickGELUActivation`, ...), and a list of class names is always one spelling short.

The rule for modules (`module_kind`). Known classes (`nn.ReLU`, `LeakyReLU`, `ReLU6`, `GELU`, `SiLU`
and subclasses, and any class named `SmeLU`, whose units fire above -beta) are watched as before.
Any other leaf module (no children) without parameters is probed, on a copy of its float32 input
grid `PROBE` (-6..6), by calling its `forward` directly (no hooks run) in eval mode. It is ReLU-like
when:
- it is deterministic and elementwise in eval mode: the same output twice, of the input's shape,
  and the output of the reversed grid is the reversed output (RReLU: its mean slope);
- it gates negatives: |f(x)| <= 0.5 |x| for x <= -3 (ReLU 0, GELU ~0, SiLU <= 0.15, ELU -1,
  LeakyReLU with slope <= 0.5);
- it passes positives: |f(x) - x| <= 0.1 x for 3 <= x <= 6 (ReLU6 included).
Tanh, Sigmoid, Identity, Dropout, Softmax or a scaling fail it. A parameter-free leaf whose class
name looks like an activation (`activation`, `act`, `...lu`, `swish`, `mish`) but fails the probe
(or cannot be called on a 1-d tensor) stays unwatched, and the watcher names them in one message.
Probe-recognised modules use tau = 0 ("fired" = output > 0: positive pre-activation).

The rule for functions (`FUNCTIONS`): the torch functions that compute these activations, as a
`TorchFunctionMode` sees them (`F.relu`, `torch.relu`, `torch.relu_` / `F.relu_`, `Tensor.relu`,
`F.leaky_relu`, `F.relu6`, `F.hardtanh(x, 0, 6)` as nn.ReLU6 spells it, `F.gelu`, `F.silu`,
`F.elu`, `F.hardswish`, `F.mish`), each with the short name that the row's layer ends in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KNOWN_TYPES = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.GELU, nn.SiLU)
KNOWN_NAMES = ("SmeLU",)  # by class name, so trainlight.collectors.SmeLU is picked up
NONNEGATIVE = (nn.ReLU, nn.ReLU6)  # exact types whose outputs are >= 0 (or NaN)
PROBE = torch.linspace(-6.0, 6.0, 241)
LOOKS_LIKE_ACTIVATION = re.compile(r"activation|^act|act$|lu\d*$|swish|mish", re.IGNORECASE)


@dataclass(frozen=True)
class Kind:
    """How an activation's outputs are read: fired = output > tau; `nonnegative` outputs (ReLU,
    ReLU6 at tau 0) let "max > 0" be read as "mean > 0" (one op fewer per batch)."""

    name: str
    tau: float = 0.0
    nonnegative: bool = False


def module_kind(module: nn.Module) -> Kind | None:
    """The module's `Kind` if `watch()` observes it (the rule in the module docstring)."""
    mro = {cls.__name__ for cls in type(module).__mro__}
    if isinstance(module, KNOWN_TYPES) or any(n in mro for n in KNOWN_NAMES):
        return Kind(type(module).__name__, 0.0, type(module) in NONNEGATIVE)
    if is_probed(module) and relu_like(module):
        return Kind(type(module).__name__)
    return None


def is_probed(module: nn.Module) -> bool:
    """Leaf modules without parameters are the candidates the probe examines."""
    return next(module.children(), None) is None and next(module.parameters(), None) is None


def looks_like_activation(module: nn.Module) -> bool:
    return bool(LOOKS_LIKE_ACTIVATION.search(type(module).__name__))


def relu_like(module: nn.Module) -> bool:
    """Whether `module` computes a ReLU-like elementwise function on `PROBE` (never raises).

    Probed in eval mode (running statistics are not updated, Dropout is the identity), with the
    random number generators' state restored: watching never changes what the training does.
    """
    device = next((b.device for b in module.buffers()), torch.device("cpu"))
    devices = [device.index or 0] if device.type == "cuda" else []
    training, forward = module.training, type(module).forward
    try:
        module.training = False
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            x = PROBE.to(device)
            y, again = forward(module, x.clone()), forward(module, x.clone())
            flipped = forward(module, x.flip(0))
    except Exception:  # a module that needs other arguments is no activation function
        return False
    finally:
        module.training = training
    if not all(isinstance(t, torch.Tensor) and t.shape == x.shape for t in (y, again, flipped)):
        return False
    y, again, flipped = (t.detach().to(torch.float64) for t in (y, again, flipped))
    x64 = PROBE.to(y.device, torch.float64)
    if not (torch.equal(y, again) and torch.allclose(flipped.flip(0), y, atol=1e-6)):
        return False
    low, high = x64 <= -3.0, (x64 >= 3.0)
    gated = bool((y[low].abs() <= 0.5 * x64[low].abs()).all())
    passed = bool(((y[high] - x64[high]).abs() <= 0.1 * x64[high]).all())
    return gated and passed


Rule = Callable[[tuple[Any, ...], dict[str, Any]], Kind | None]


def _always(name: str, nonnegative: bool = False) -> Rule:
    kind = Kind(name, 0.0, nonnegative)
    return lambda args, kwargs: kind


def _hardtanh(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Kind | None:
    """`F.hardtanh(x, 0, 6)` is ReLU6 (nn.ReLU6 calls it so); other bounds are no ReLU."""
    low = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
    high = args[2] if len(args) > 2 else kwargs.get("max_val", 1.0)
    return Kind("relu6", 0.0, True) if (low, high) == (0.0, 6.0) else None


FUNCTIONS: dict[Callable[..., Any], Rule] = {
    F.relu: _always("relu", True),
    torch.relu: _always("relu", True),
    torch.relu_: _always("relu", True),
    torch.Tensor.relu: _always("relu", True),
    torch.Tensor.relu_: _always("relu", True),
    F.relu6: _always("relu6", True),
    F.hardtanh: _hardtanh,
    F.leaky_relu: _always("leaky_relu"),
    F.gelu: _always("gelu"),
    F.silu: _always("silu"),
    F.elu: _always("elu"),
    F.hardswish: _always("hardswish"),
    F.mish: _always("mish"),
}
