"""The store's contract: DuckDB tables, the segment file format, and run-id rules.

This is the one module shared by the writer (collectors, inside training processes) and the reader
(the server's ingester and the dashboard). It imports neither torch nor dash, so the dashboard image
never needs PyTorch and a training process never needs Dash.

Segments are Parquet files with one "union" table: a ``table`` column says which store table a row
belongs to, the other columns are the union of those tables' columns (unused ones are null, which
Parquet stores for free). The run's header (name, project, config, status, ...) rides in the file's
key/value metadata, so every segment is self-describing and ingest never depends on having seen an
earlier one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from trainlight.collectors.health.evaluator import ROLE_NAMES
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import SIGNALS

if TYPE_CHECKING:
    import duckdb

SEGMENT_FORMAT = 1
HEADER_KEY = b"trainlight.header"

RUN_STATUSES = ("running", "finished", "crashed", "stopped")
TERMINAL_STATUSES = ("finished", "crashed", "stopped")
# `stale` is never stored: it is how a `running` run without a recent heartbeat is shown.
STALE = "stale"

# Tables a segment row can target, in the order ingest inserts them.
SEGMENT_TABLES = ("metrics", "layer_metrics", "lca_frames")

SEGMENT_SCHEMA = pa.schema(
    [
        pa.field("table", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("key", pa.dictionary(pa.int32(), pa.string())),
        pa.field("layer", pa.dictionary(pa.int32(), pa.string())),
        pa.field("value", pa.float64()),
        pa.field("wall_time", pa.timestamp("us")),  # naive UTC, like every store timestamp
        pa.field("n_rows", pa.int32()),
        pa.field("n_cols", pa.int32()),
        pa.field("values", pa.list_(pa.float32())),
    ]
)

# Forward-only migrations: MIGRATIONS[i] upgrades a store from version i to i + 1.
# A store is never downgraded; a newer store opened by older code is refused with a clear error.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs(
            run_id VARCHAR PRIMARY KEY, project VARCHAR, name VARCHAR, "group" VARCHAR,
            tags VARCHAR[], config JSON, status VARCHAR, started_at TIMESTAMP,
            updated_at TIMESTAMP, host VARCHAR, pid INTEGER, last_step BIGINT,
            stop_requested BOOLEAN DEFAULT false, stop_reason VARCHAR,
            dropped_rows BIGINT DEFAULT 0)""",
        """CREATE TABLE metrics(
            run_id VARCHAR, step BIGINT, key VARCHAR, value DOUBLE, wall_time TIMESTAMP)""",
        """CREATE TABLE layer_metrics(
            run_id VARCHAR, step BIGINT, layer VARCHAR, key VARCHAR, value DOUBLE)""",
        """CREATE TABLE lca_frames(
            run_id VARCHAR, step BIGINT, layer VARCHAR, n_rows INTEGER, n_cols INTEGER,
            "values" FLOAT[])""",
        """CREATE TABLE health(
            run_id VARCHAR, signal VARCHAR, state VARCHAR, step BIGINT, reason VARCHAR,
            updated_at TIMESTAMP)""",
        """CREATE TABLE latest(
            run_id VARCHAR, key VARCHAR, layer VARCHAR, step BIGINT, value DOUBLE,
            PRIMARY KEY (run_id, key, layer))""",
        # Exactly-once ingest: a (run_id, seq) recorded here is never ingested again.
        """CREATE TABLE segments(
            run_id VARCHAR, seq BIGINT, n_rows BIGINT, ingested_at TIMESTAMP,
            PRIMARY KEY (run_id, seq))""",
    ),
    (
        # The health rules' memory per run (JSON text; may hold NaN), saved in the same
        # transaction as the rows it was computed from, so evaluation resumes exactly.
        """CREATE TABLE health_state(run_id VARCHAR PRIMARY KEY, state VARCHAR)""",
    ),
    (
        # Transitions of one batch share updated_at: `seq` orders them ("the latest row per
        # (run_id, signal)" is the one with the highest seq).
        "CREATE SEQUENCE health_seq",
        "ALTER TABLE health ADD COLUMN seq BIGINT",
        "UPDATE health SET seq = nextval('health_seq')",
        # Which process namespace `pid` belongs to (boot id + pid namespace), so the server
        # only judges liveness by pid for processes it can actually see.
        "ALTER TABLE runs ADD COLUMN pid_namespace VARCHAR",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# `latest.layer` is part of the primary key, so run-level scalars use this instead of NULL.
NO_LAYER = ""

_RUN_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


DEFAULT_STORE_DIR = "./trainlight-runs"
STORE_DIR_ENV = "TRAINLIGHT_DIR"


@dataclass(frozen=True)
class StoreLayout:
    """Where things live in a store directory; the writer and the server agree through this."""

    root: Path

    @classmethod
    def resolve(cls, directory: str | os.PathLike[str] | None = None) -> StoreLayout:
        chosen = directory or os.environ.get(STORE_DIR_ENV) or DEFAULT_STORE_DIR
        return cls(Path(chosen).expanduser().absolute())

    @property
    def database(self) -> Path:
        return self.root / "trainlight.duckdb"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def control(self) -> Path:
        return self.root / "control"

    def run_inbox(self, run_id: str) -> Path:
        return self.inbox / check_run_id(run_id)

    def segment_path(self, run_id: str, seq: int) -> Path:
        return self.run_inbox(run_id) / segment_file_name(seq)

    def control_path(self, run_id: str) -> Path:
        return self.control / f"{check_run_id(run_id)}.json"


def process_namespace() -> str:
    """This process's boot id and pid namespace: two processes with equal values can check each
    other's pids; '' where /proc does not tell (then nobody judges liveness by pid)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def segment_file_name(seq: int) -> str:
    # Zero-padded so a directory listing sorts in sequence order.
    return f"{seq:012d}.parquet"


def parse_segment_file_name(name: str) -> int | None:
    """The seq of a finished segment file, or None for temporary and foreign files."""
    stem, dot, ext = name.partition(".")
    if ext != "parquet" or not dot or not stem.isdigit():
        return None
    return int(stem)


def list_segment_files(root: Path) -> list[tuple[str, int, Path]]:
    """(run_id, seq, path) of every finished segment in `root/<run_id>/`, in delivery order.

    Used for the store's inbox and for a collector's HTTP outbox, which share this layout.
    """
    found: list[tuple[str, int, Path]] = []
    try:
        run_dirs = [entry for entry in os.scandir(root) if entry.is_dir()]
    except OSError:
        return found
    for run_dir in run_dirs:
        try:
            names = os.listdir(run_dir.path)
        except OSError:
            continue
        for name in names:
            seq = parse_segment_file_name(name)
            if seq is not None and is_valid_run_id(run_dir.name):
                found.append((run_dir.name, seq, Path(run_dir.path) / name))
    found.sort(key=lambda item: (item[0], item[1]))
    return found


def write_atomically(path: Path, data: bytes) -> None:
    """Write a unique temporary sibling, fsync it, rename it, fsync the directory.

    Readers see the whole file or nothing, concurrent writers of the same path (two server
    threads receiving the same retried segment) never share a temporary, and once this returns
    the file survives a power loss (the rename itself is made durable).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass(frozen=True)
class StopRequest:
    """A request, from the dashboard or an auto-prune rule, that a run stop at its next check."""

    reason: str = "stop requested from the dashboard"

    def to_bytes(self) -> bytes:
        return json.dumps({"stop": True, "reason": self.reason}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> StopRequest | None:
        data = json.loads(raw)
        if isinstance(data, dict) and data.get("stop"):
            return cls(reason=str(data.get("reason") or cls.reason))
        return None


class SchemaError(RuntimeError):
    """The store was written by a newer trainlight than this one."""


def make_run_id(name: str) -> str:
    """A URL- and path-safe id for a run: a readable slug of the name plus 8 random hex digits.

    Names are free text (quotes, slashes, emoji); they are stored as data, while the id is what
    appears in paths and URLs. The random suffix keeps ids unique when names repeat.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _SLUG_DROP.sub("-", ascii_name.lower()).strip("-")[:40].strip("-") or "run"
    return f"{slug}-{secrets.token_hex(4)}"


def is_valid_run_id(run_id: str) -> bool:
    """True for ids that are safe as a single path component and URL segment."""
    return isinstance(run_id, str) and _RUN_ID_RE.fullmatch(run_id) is not None


def check_run_id(run_id: str) -> str:
    if not is_valid_run_id(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: use 1-80 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit"
        )
    return run_id


@dataclass(frozen=True)
class RunHeader:
    """What a segment says about its run. Sent whole with every segment (a few hundred bytes)."""

    run_id: str
    seq: int
    name: str
    project: str = ""
    group: str = ""
    tags: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    status: str = "running"
    host: str = ""
    pid: int = 0
    started_at: float = 0.0  # unix seconds
    sent_at: float = 0.0  # unix seconds: the heartbeat
    dropped_rows: int = 0  # rows the collector discarded because its buffer was full (cumulative)
    stop_reason: str = ""  # why the run stopped, when status == "stopped"
    roles: Mapping[str, str] = field(default_factory=dict)  # e.g. {"adversary": "d_loss"}
    health: Mapping[str, Any] = field(default_factory=dict)  # HealthSettings overrides
    prune_on: tuple[str, ...] = ()  # signals whose red stops the run
    pid_namespace: str = ""  # boot id + pid namespace of `pid` (see process_namespace())

    def to_bytes(self) -> bytes:
        payload = asdict(self)
        payload["tags"] = list(self.tags)
        payload["prune_on"] = list(self.prune_on)
        payload["format"] = SEGMENT_FORMAT
        return json.dumps(payload, default=str, allow_nan=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> RunHeader:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("segment header is not a JSON object")
        if data.pop("format", None) != SEGMENT_FORMAT:
            raise ValueError(f"unsupported segment format (expected {SEGMENT_FORMAT})")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown segment header fields: {sorted(unknown)}")
        tags = data.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError("run tags must be a list of strings")
        data["tags"] = tuple(tags)
        prune_on = data.get("prune_on", [])
        if not isinstance(prune_on, list) or not all(isinstance(p, str) for p in prune_on):
            raise ValueError("prune_on must be a list of signal names")
        data["prune_on"] = tuple(prune_on)
        return cls(**data).validated()

    def validated(self) -> RunHeader:
        check_run_id(self.run_id)
        if not isinstance(self.seq, int) or self.seq < 0:
            raise ValueError(f"segment seq must be a non-negative integer, got {self.seq!r}")
        if self.status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {self.status!r}; expected one of {RUN_STATUSES}")
        if not isinstance(self.config, Mapping):
            raise ValueError("run config must be a JSON object")
        for name in ("name", "project", "group", "host", "stop_reason", "pid_namespace"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"run {name} must be a string")
        for name in ("pid", "dropped_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
                raise ValueError(f"run {name} must be an integer in [0, 2**31), got {value!r}")
        self._validate_health()
        for name in ("started_at", "sent_at"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1e11:
                raise ValueError(f"run {name} must be unix seconds, got {value!r}")
        tags = self.tags
        if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
            raise ValueError("run tags must be a list of strings")
        return self

    def _validate_health(self) -> None:
        roles = self.roles
        if not isinstance(roles, Mapping) or not all(
            k in ROLE_NAMES and isinstance(v, str) for k, v in roles.items()
        ):
            raise ValueError(f"roles must map {ROLE_NAMES} to logged keys, got {roles!r}")
        unknown = [p for p in self.prune_on if p not in SIGNALS]
        if unknown:
            raise ValueError(f"prune_on names unknown signals {unknown}; known: {SIGNALS}")
        if not isinstance(self.health, Mapping):
            raise ValueError("health settings must be a JSON object")
        HealthSettings.from_dict(self.health)  # raises with the bad setting named


def segment_table(columns: Mapping[str, Sequence[Any] | pa.Array], header: RunHeader) -> pa.Table:
    """Build a segment table from column data (missing columns become nulls)."""
    n = len(columns["step"])
    arrays = []
    for fld in SEGMENT_SCHEMA:
        data = columns.get(fld.name)
        if data is None:
            arrays.append(pa.nulls(n, fld.type))
        elif isinstance(data, pa.Array):
            arrays.append(data.cast(fld.type))
        else:
            arrays.append(pa.array(data, type=fld.type))
    table = pa.Table.from_arrays(arrays, schema=SEGMENT_SCHEMA)
    return table.replace_schema_metadata({HEADER_KEY: header.to_bytes()})


def read_header(table: pa.Table) -> RunHeader:
    metadata = table.schema.metadata or {}
    if HEADER_KEY not in metadata:
        raise ValueError("not a trainlight segment: the Parquet metadata has no run header")
    return RunHeader.from_bytes(metadata[HEADER_KEY])


def normalise_segment(table: pa.Table) -> pa.Table:
    """The segment with exactly SEGMENT_SCHEMA's columns and types, or ValueError saying why.

    Writers on other pyarrow versions may send plain or large strings where we write
    dictionaries, or extra columns; after this every segment of a batch has one schema.
    """
    missing = [f.name for f in SEGMENT_SCHEMA if f.name not in table.column_names]
    if missing:
        raise ValueError(f"segment is missing columns {missing}")
    for fld in SEGMENT_SCHEMA:
        got = table.schema.field(fld.name).type
        if not _compatible(got, fld.type):
            raise ValueError(f"segment column {fld.name!r} has type {got}, expected {fld.type}")
    for name in ("table", "step"):
        if table[name].null_count:
            raise ValueError(f"segment column {name!r} has null values")
    kinds = set(table["table"].unique().to_pylist()) if table.num_rows else set()
    unknown = kinds - set(SEGMENT_TABLES)
    if unknown:
        raise ValueError(f"segment rows target unknown tables {sorted(map(str, unknown))}")
    columns = [table[f.name].cast(f.type) for f in SEGMENT_SCHEMA]
    return pa.Table.from_arrays(columns, schema=SEGMENT_SCHEMA).replace_schema_metadata(
        table.schema.metadata
    )


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_dictionary(want):
        value_type = got.value_type if pa.types.is_dictionary(got) else got
        return bool(pa.types.is_string(value_type) or pa.types.is_large_string(value_type))
    return bool(got.equals(want))


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Create or upgrade the store's tables in place; return the schema version now in force."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    current = int(row[0]) if row and row[0] is not None else 0
    if current > SCHEMA_VERSION:
        raise SchemaError(
            f"this store has schema version {current}, newer than this trainlight understands "
            f"({SCHEMA_VERSION}); upgrade trainlight to read it"
        )
    for version in range(current, SCHEMA_VERSION):
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?)", [version + 1])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION
