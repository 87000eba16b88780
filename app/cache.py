"""Server-side cache for dashboard queries, keyed by the store's data version.

Every committed write bumps `Store.data_version`, so a key that includes it can never serve data
older than the last ingest: no invalidation logic, just a short timeout (SimpleCache, per process)
that bounds memory and anything time-derived the cached value might hold. Pages call
`cached_read(cache, store, name, compute, *args)`; `compute(cursor, *args)` runs only on a miss.
Values are pickled (each hit gets a copy) unless the caller marks them `shared`: read-only
values it wants back without the copy. `cached_update` also hands `compute` the previous
version's value, for results that are cheaper to update than to rebuild.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from cachelib.serializers import BaseSerializer
from flask import Flask
from flask_caching import Cache

from trainlight.app.store.database import Store

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 30


@dataclass(frozen=True)
class _Shared(Generic[T]):
    """A cached value kept as the object itself rather than pickled."""

    value: T


class _KeepShared(BaseSerializer):
    """SimpleCache's pickling (every hit gets its own copy), except for `_Shared` values."""

    def dumps(self, value: Any, protocol: int = pickle.HIGHEST_PROTOCOL) -> Any:
        return value if isinstance(value, _Shared) else super().dumps(value, protocol)

    def loads(self, bvalue: Any) -> Any:
        return bvalue if isinstance(bvalue, _Shared) else super().loads(bvalue)


def create_cache(server: Flask, timeout_s: int = DEFAULT_TIMEOUT_S) -> Cache:
    """A SimpleCache bound to the app's Flask server."""
    cache = Cache(
        config={
            "CACHE_TYPE": "SimpleCache",
            "CACHE_DEFAULT_TIMEOUT": timeout_s,
            "CACHE_SERIALIZER": _KeepShared(),
        }
    )
    cache.init_app(server)
    return cache


def cache_key(name: str, data_version: int, args: tuple[Hashable, ...]) -> str:
    return f"trainlight:{name}:v{data_version}:{args!r}"


def cached_read(
    cache: Cache,
    store: Store,
    name: str,
    compute: Callable[..., T],
    *args: Hashable,
    shared: bool = False,
) -> T:
    """`compute(cursor, *args)`, served from the cache while the store's data is unchanged.

    A hit is an unpickled copy; with `shared` it is the cached object itself, which saves the
    copy (~50 ms for the grid's 1,000 rows) but is only for values nobody mutates (frozen
    dataclasses, tuples, dicts treated as read-only)."""
    version = store.data_version  # read before the query: a write racing it only causes a miss
    key = cache_key(name, version, args)
    hit = cache.get(key)
    if hit is not None:
        return cast(T, hit.value if isinstance(hit, _Shared) else hit)
    with store.read() as cur:
        value = compute(cur, *args)
    cache.set(key, _Shared(value) if shared else value)
    return value


def cached_update(
    cache: Cache, store: Store, name: str, compute: Callable[[Any, T | None], T]
) -> T:
    """Like `cached_read(..., shared=True)`, but `compute(cursor, last)` also gets the last
    value computed under `name` for any data version (None if none is cached any more), so it
    can reuse the parts the new data left unchanged."""
    version = store.data_version
    key = cache_key(name, version, ())
    hit = cache.get(key)
    if isinstance(hit, _Shared):
        return cast(T, hit.value)
    last = cache.get(cache_key(name, -1, ()))
    with store.read() as cur:
        value = compute(cur, last.value if isinstance(last, _Shared) else None)
    cache.set(key, _Shared(value))
    cache.set(cache_key(name, -1, ()), _Shared(value))
    return value
