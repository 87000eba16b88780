"""The server's single handle on `trainlight.duckdb`.

DuckDB lets exactly one process open a database file while it is written, so the server is that
process: one connection, cursors for every reader thread (dashboard callbacks, API requests), and a
lock that serialises write transactions (ingest, stop requests) so they never conflict. Every
committed write bumps `data_version`, which the dashboard's cache uses as its key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import duckdb

from trainlight.app.store.migrations import migrate
from trainlight.collectors.schema import StoreLayout


class StoreOpenError(RuntimeError):
    """The store's database cannot be opened; the message says why and what to do."""


class StoreLockedError(StoreOpenError):
    """Another process (usually a running `trainlight serve`) has the database open."""


class StoreCorruptError(StoreOpenError):
    """The database file exists but is not a readable DuckDB database (truncated, overwritten)."""


class Store:
    """An open store directory: its layout plus the DuckDB connection."""

    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.inbox.mkdir(exist_ok=True)
        layout.control.mkdir(exist_ok=True)
        self._con = _connect(layout)
        self.schema_version = migrate(self._con)
        self._write_lock = threading.Lock()
        self._version_lock = threading.Lock()
        self._data_version = 0

    @property
    def data_version(self) -> int:
        """Increases with every committed write; a cache key for everything read from the store."""
        return self._data_version

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for one read; each thread gets its own, so reads run concurrently."""
        cursor = self._con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction, serialised with every other writer of this process."""
        with self._write_lock:
            cursor = self._con.cursor()
            try:
                cursor.execute("BEGIN TRANSACTION")
                try:
                    yield cursor
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            finally:
                cursor.close()
            with self._version_lock:
                self._data_version += 1

    def close(self) -> None:
        with self._write_lock:
            self._con.close()


def _connect(layout: StoreLayout) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(layout.database))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreLockedError(
                f"cannot open {layout.database}: another process holds it ({exc}). Only one "
                "trainlight process may open a store at a time; use the running server's "
                "HTTP API or stop it first."
            ) from exc
        raise StoreCorruptError(
            f"cannot open {layout.database}: the file is corrupt or not a DuckDB database "
            f"({exc}). Move it aside (keep it for recovery) to start a new store."
        ) from exc


def utc_naive(seconds: float | None = None) -> datetime:
    """A naive datetime in UTC: the convention for every TIMESTAMP column of the store."""
    moment = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
    return moment.replace(tzinfo=None)
