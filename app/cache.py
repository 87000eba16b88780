"""Server-side cache for dashboard queries, keyed by the store's data version.

Every committed write bumps `Store.data_version`, so a key that includes it can never serve data
older than the last ingest: no invalidation logic, just a short timeout (SimpleCache, per process)
that bounds memory and anything time-derived the cached value might hold. Pages call
`cached_read(cache, store, name, compute, *args)`; `compute(cursor, *args)` runs only on a miss.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar, cast

from flask import Flask
from flask_caching import Cache

from trainlight.app.store.database import Store

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 30


def create_cache(server: Flask, timeout_s: int = DEFAULT_TIMEOUT_S) -> Cache:
    """A SimpleCache bound to the app's Flask server."""
    cache = Cache(config={"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": timeout_s})
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
) -> T:
    """`compute(cursor, *args)`, served from the cache while the store's data is unchanged."""
    version = store.data_version  # read before the query: a write racing it only causes a miss
    key = cache_key(name, version, args)
    hit = cache.get(key)
    if hit is not None:
        return cast(T, hit)
    with store.read() as cur:
        value = compute(cur, *args)
    cache.set(key, value)
    return value
