"""Activation function calls inside the watched model (`F.relu(self.c1(x))`), seen on gated passes.

Much real code never builds an activation module: `F.relu`, `torch.relu_`, `F.leaky_relu(h, 0.2)`,
and `nn.TransformerEncoderLayer` calls `F.relu` itself. On an observed training pass only (the
`Gate` is open), the root module's pre-hook pushes a `torch.overrides.TorchFunctionMode` and
installs process-wide module hooks (`register_module_forward_pre_hook`/`..._forward_hook`, filtered
to the watched model's modules); the root's post-hook (always called, exceptions too) removes both.
Unobserved passes therefore pay one Python call in the root's pre-hook and nothing else: no mode,
no hooks on any submodule, no per-op dispatch.

During the pass the module hooks keep the stack of modules in forward and map each module output
tensor to the module that produced it (parameter-free leaves such as Dropout pass their input's
producer on). The mode sees every torch function call; an activation (`activation_kinds.FUNCTIONS`)
is computed, then its output goes to the same `LayerHook`/`UnitStats` as a module's output: same
statistics, windows, device-side accumulation and no device read. Its row is named after the
layer whose units it holds, the producer of its input: `c1→relu`, `encoder.layers.0.linear1→relu`;
otherwise after the calling module and the call's ordinal in it: `block→relu#2`. A name met twice
in one pass gets `#2`, `#3`. Calls inside a watched activation module (nn.GELU calls F.gelu) are
that module's and are not counted again.

Units: the producer's units. A Linear's outputs hold its features on the last axis, whatever the
layout ((seq, batch, d) in a transformer), so an activation of a Linear's output uses unit_dim -1;
any other uses the watcher's `unit_dim`.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from trainlight.collectors.signals.activation_kinds import FUNCTIONS, Kind, is_probed

if TYPE_CHECKING:
    from trainlight.collectors.signals.activations import ActivationWatcher, LayerHook

Producer = tuple["weakref.ref[torch.Tensor]", str, bool]  # the output, module name, is a Linear


class _Mode(TorchFunctionMode):
    """Routes activation function calls to the tracker; everything else runs untouched."""

    def __init__(self, tracker: PassTracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        try:
            rule = FUNCTIONS.get(func) if not self.tracker.inside_watched else None
        except TypeError:  # an unhashable callable: no activation of ours
            rule = None
        if rule is None or not args or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        site = self.tracker.site_of(args, kwargs, rule)
        out = func(*args, **kwargs)
        if site is not None:
            self.tracker.observe(site, out)
        return out


class PassTracker:
    """The root hooks that observe one gated pass's modules and activation function calls."""

    def __init__(self, watcher: ActivationWatcher, root: nn.Module, prefix: str) -> None:
        self.watcher, self.root = watcher, root
        self.names: dict[int, str] = {}
        self.linear: set[int] = set()
        self.passthrough: set[int] = set()
        for name, module in root.named_modules():
            self.names[id(module)] = prefix + name if name else prefix.rstrip(".")
            self.names[id(module)] = self.names[id(module)] or type(module).__name__
            if isinstance(module, nn.Linear):
                self.linear.add(id(module))
            elif is_probed(module):
                self.passthrough.add(id(module))
        self.watched: set[int] = set()  # ids of watched activation modules (set by the watcher)
        self.sites: dict[str, LayerHook] = {}
        self.seen_functional = False
        self.inside_watched = 0
        self._mode: _Mode | None = None
        self._handles: list[RemovableHandle] = []
        self._stack: list[nn.Module] = []
        self._producers: dict[int, Producer] = {}
        self._ordinals: Counter[int] = Counter()
        self._used: Counter[str] = Counter()

    @property
    def active(self) -> bool:
        """Whether this pass is tracked (module outputs' producers are known)."""
        return self._mode is not None

    def start(self) -> None:
        """An observed pass begins (root pre-hook, gate open): track it."""
        if self._mode is not None:
            return
        try:
            self._stack = [self.root]
            self._handles = [
                module_hooks.register_module_forward_pre_hook(self._pre),
                module_hooks.register_module_forward_hook(self._post, always_call=True),
            ]
            self._mode = _Mode(self)
            self._mode.__enter__()
        except Exception as exc:  # never break training: this pass goes untracked
            self._fail(exc)
            self.stop()

    def stop(self) -> None:
        """The observed pass ended (root post-hook, always called): stop tracking."""
        if self._mode is None and not self._handles:
            return
        handles, self._handles = self._handles, []
        for handle in handles:
            handle.remove()
        mode, self._mode = self._mode, None
        if mode is not None:
            depth = torch._C._len_torch_function_stack()
            if depth and torch._C._get_function_stack_at(depth - 1) is mode:
                mode.__exit__(None, None, None)
            else:  # someone else's mode is on top (left by an exception): leave the stack alone
                self._fail(RuntimeError("torch function mode stack changed during forward"))
        self._stack, self.inside_watched = [], 0
        self._producers.clear()
        self._ordinals.clear()
        self._used.clear()

    def _pre(self, module: nn.Module, args: Any) -> None:
        if id(module) in self.names:
            self._stack.append(module)
            self.inside_watched += id(module) in self.watched

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        if id(module) not in self.names:
            return
        try:
            self._left(module, args, output)
        except Exception as exc:  # a hook on every module: never raise into the forward
            self._fail(exc)

    def _left(self, module: nn.Module, args: Any, output: Any) -> None:
        """`module` returned `output`: pop it, remember it as the producer of `output`."""
        key = id(module)
        if self._stack and self._stack[-1] is module:
            self._stack.pop()
        if key in self.watched:
            self.inside_watched = max(0, self.inside_watched - 1)
        elif isinstance(output, torch.Tensor) and self.producer(output) is None:
            passed = self.producer(args[0]) if key in self.passthrough and args else None
            name, linear = (self.names[key], key in self.linear) if passed is None else passed
            self._producers[id(output)] = (weakref.ref(output), name, linear)

    def producer(self, x: Any) -> tuple[str, bool] | None:
        """(module name, is a Linear) of the innermost module whose output `x` is, this pass
        (a freed output's id may be reused: the weak reference tells)."""
        found = self._producers.get(id(x))
        if found is None or found[0]() is not x:
            return None
        return found[1], found[2]

    def unit_dim_of(self, x: Any, default: int) -> int:
        found = self.producer(x)
        return -1 if found is not None and found[1] else default

    def site_of(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], rule: Callable[..., Kind | None]
    ) -> tuple[LayerHook, int] | None:
        """The call site (its hook, the units' axis) an activation call's output belongs to."""
        self.seen_functional = True
        try:
            kind = rule(args, kwargs)
            caller = self._stack[-1] if self._stack else None
            if kind is None or caller is None or not caller.training:
                return None
            self._ordinals[id(caller)] += 1
            found = self.producer(args[0])
            if found is not None:
                name = f"{found[0]}→{kind.name}"
            else:
                name = f"{self.names[id(caller)]}→{kind.name}#{self._ordinals[id(caller)]}"
            self._used[name] += 1
            if self._used[name] > 1:
                name = f"{name}#{self._used[name]}"
            unit_dim = self.unit_dim_of(args[0], self.watcher.unit_dim)
            return self.watcher.functional_site(name, kind), unit_dim
        except Exception as exc:
            self._fail(exc)
            return None

    def observe(self, site: tuple[LayerHook, int], out: Any) -> None:
        """Record an activation's output; 0-d and 1-d results (a hinge loss's F.relu) are no
        layer's units and are left alone."""
        hook, unit_dim = site
        if not isinstance(out, torch.Tensor) or out.dim() >= 2:
            hook.record(0, out, unit_dim)  # never raises: failures are reported per layer

    def _fail(self, exc: Exception) -> None:
        self.watcher.problems.report(
            "watch_functional_failed",
            f"watch(): activation function calls of this pass were not observed: {exc!r}",
        )
