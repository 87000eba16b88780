"""trackio project databases: each trackio run is one run, with its numeric metrics and config.

trackio (0.24+) keeps a project in one SQLite file, `<TRACKIO_DIR>/<project>.db`: a row of
`metrics` per `trackio.log` call (run_id, run_name, step, an ISO-8601 UTC timestamp, the logged
dict as JSON with NaN/±Inf written as the strings "NaN"/"Infinity"/"-Infinity"), and a row of
`configs` per run (the config as JSON, plus trackio's own `_Username`, `_Created`, `_Group`).
Databases from before 0.24 have no run_id: the run name is the run. Read straight from SQLite,
so the trackio package is not needed, and opened read-only (`mode=ro`): an import never
writes to another tool's store, even one a training is writing to at that moment.

Each logged number is one event: nested dicts become `outer/inner` keys; strings, booleans and
trackio's media and tables (dicts with a `_type`) are left out. Events keep the row order (row
ids grow as runs log), so a growing database only appends. The source is the database file: it
counts as growing while it, or its write-ahead log when that holds frames, was modified within
GROWING_WITHIN_S (a reader's open leaves an empty log with a fresh mtime: not a write).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainlight.integrations.importers.source import (
    EventsBuilder,
    RunFailure,
    ScalarEvents,
    SourceError,
    SourceRun,
    is_growing,
)

KIND = "trackio"
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_NEEDED = {"run_name", "step", "timestamp", "metrics"}


class UnreadableRun(Exception):
    """A row of the run could not be read; the message is one line."""


def read_database(db: Path, project: str | None, now: float) -> Iterator[SourceRun | RunFailure]:
    """The runs of a trackio database in order of their first row, each read on its own."""
    path = db.expanduser().resolve()
    if not path.is_file():
        raise SourceError(f"{db}: no such file")
    wal = path.with_name(path.name + "-wal")
    pending = wal.exists() and wal.stat().st_size > 0  # frames not yet in the database file
    growing = is_growing([path.stat().st_mtime, *([wal.stat().st_mtime] if pending else [])], now)
    connection = _connect(db, path, quiet=not (growing or pending))
    with closing(connection):
        ident, config_ident = _schema(connection, db)
        try:
            runs = _runs(connection, ident)
        except sqlite3.Error as exc:
            raise SourceError(f"{db}: cannot list its runs ({exc})") from None
        for key, name in runs:
            try:
                events = _events(connection, ident, key)
                config = _config(connection, config_ident, key)
            except (UnreadableRun, sqlite3.Error) as exc:
                yield RunFailure(name, str(exc))
                continue
            yield SourceRun(
                kind=KIND,
                source=path,
                path=str(key),
                name=name,
                project=project or path.stem,
                events=events,
                growing=growing,
                group=str(config.pop("_Group", None) or ""),
                config={k: v for k, v in config.items() if not k.startswith("_")},
            )


def _connect(db: Path, path: Path, quiet: bool) -> sqlite3.Connection:
    """Read-only. A quiet database whose write-ahead log is empty is all in its file: opened
    `immutable` (no locks), SQLite then creates no -wal/-shm files beside it, so the import
    leaves the user's directory exactly as it was. Otherwise SQLite's shared read-only open,
    which reads the writer's log and respects its locks."""
    flags = "mode=ro&immutable=1" if quiet else "mode=ro"
    try:
        return sqlite3.connect(f"{path.as_uri()}?{flags}", uri=True)
    except sqlite3.Error as exc:
        raise SourceError(f"{db}: cannot open read-only ({exc})") from None


def _schema(connection: sqlite3.Connection, db: Path) -> tuple[str, str | None]:
    """The column naming a run in `metrics` and in `configs` (None: no configs table)."""
    try:
        metrics = _columns(connection, "metrics")
        configs = _columns(connection, "configs")
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{db}: not a readable SQLite database ({exc})") from None
    if not _NEEDED.issubset(metrics):
        raise SourceError(f"{db}: not a trackio database (no metrics table with {sorted(_NEEDED)})")
    ident = "run_id" if "run_id" in metrics else "run_name"
    return ident, ident if {ident, "config"} <= configs else None


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in connection.execute(f"PRAGMA table_info({table})")}


def _runs(connection: sqlite3.Connection, ident: str) -> list[tuple[Any, str]]:
    """(run key, its latest name) per run, in order of the run's first row."""
    rows = connection.execute(
        f"""SELECT runs.{ident}, latest.run_name FROM
            (SELECT {ident}, min(id) AS first_id, max(id) AS last_id FROM metrics
             GROUP BY {ident}) runs
            JOIN metrics latest ON latest.id = runs.last_id
            ORDER BY runs.first_id"""
    )
    return [(key, str(name)) for key, name in rows]


def _events(connection: sqlite3.Connection, ident: str, key: Any) -> ScalarEvents:
    builder = EventsBuilder()
    rows = connection.execute(
        f"SELECT id, step, timestamp, metrics FROM metrics WHERE {ident} = ? ORDER BY id", [key]
    )
    for row_id, step, timestamp, raw in rows:
        try:
            wall_time = _unix_seconds(timestamp)
            logged = json.loads(raw)
            if not isinstance(logged, Mapping):
                raise ValueError("not a JSON object")
            for name, value in numbers(logged):
                builder.add(int(step), name, value, wall_time)
        except (ValueError, TypeError, RecursionError) as exc:
            raise UnreadableRun(f"metrics row {row_id}: {exc}") from None
    return builder.build()


def _config(connection: sqlite3.Connection, ident: str | None, key: Any) -> dict[str, Any]:
    if ident is None:
        return {}
    row = connection.execute(
        f"SELECT config FROM configs WHERE {ident} = ? ORDER BY id DESC LIMIT 1", [key]
    ).fetchone()
    if row is None:
        return {}
    try:
        config = json.loads(row[0])
    except (ValueError, TypeError, RecursionError) as exc:
        raise UnreadableRun(f"config: {exc}") from None
    if not isinstance(config, dict):
        raise UnreadableRun("config: not a JSON object")
    return config


def numbers(logged: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(key, value) of every number in a logged dict, nested dicts flattened to `a/b`."""
    for key, value in logged.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if "_type" not in value:  # media, tables and histograms carry a _type
                yield from numbers(value, f"{name}/")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, float):
            yield name, value
        elif isinstance(value, int):  # JSON integers are unbounded; floats are not
            yield name, float(value) if abs(value) < 2**1023 else math.copysign(math.inf, value)
        elif isinstance(value, str) and value in _SPECIAL:
            yield name, _SPECIAL[value]


def _unix_seconds(timestamp: str) -> float:
    moment = datetime.fromisoformat(timestamp)
    if moment.tzinfo is None:  # trackio writes UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
