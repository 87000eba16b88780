"""The dashboard's pages. Each module has `register(app, deps)`: its route, layout and callbacks.

The app factory registers `PAGES` in order, each with the same `PageDeps`, so a new page is one
module and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask_caching import Cache

from trainlight.app.store.database import Store


@dataclass(frozen=True)
class PageDeps:
    """What every page's callbacks read from: the store, the shared read cache, and when a
    silent run counts as stale."""

    store: Store
    cache: Cache
    stale_after: timedelta
