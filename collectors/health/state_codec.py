"""Rule windows to JSON and back, driven by their dataclass annotations.

JSON has lists where a window has tuples and plain objects where it nests dataclasses; this
rebuilds them from the field types, so a new window class needs no (de)serialisation code.
Fields a saved state lacks take their defaults and fields a window no longer has are dropped,
so states saved by another release still load.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def dump_fields(value: object) -> dict[str, Any]:
    """A window's fields, for `json.dumps(default=...)` (as `asdict` gives them, without its
    deep copy, which took longer than judging a small segment)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    raise TypeError(f"cannot save {type(value).__name__} in a health state")


def load_dataclass(cls: type[T], data: Mapping[str, Any]) -> T:
    hints = _hints(cls)
    known = {name: _convert(hints[name], value) for name, value in data.items() if name in hints}
    return cls(**known)


_HINTS: dict[type, dict[str, Any]] = {}  # resolving annotations costs more than loading


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        names = {f.name for f in fields(cls)}
        hints = {k: v for k, v in typing.get_type_hints(cls).items() if k in names}
        _HINTS[cls] = hints
    return hints


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        return _convert(real[0], value) if len(real) == 1 else value
    if isinstance(hint, type) and is_dataclass(hint):
        return load_dataclass(hint, value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if origin is list:
        return [_convert(args[0], v) for v in value]
    if origin is dict:
        return {k: _convert(args[1], v) for k, v in value.items()}
    return value
