"""The store's contract: DuckDB tables, the segment file format, and run-id rules.

This is the one module the writer (collectors, inside training processes) and the reader (the
server's ingester and the dashboard) share. It imports neither torch nor dash, so the dashboard
image never needs PyTorch and a training process never needs Dash. The run header and the store's
files live in run_header.py and store_files.py and are re-exported here.

Segments are Parquet files with one "union" table: a ``table`` column says which store table a row
belongs to, the other columns are the union of those tables' columns (unused ones are null, which
Parquet stores for free). The run's header (name, project, config, status, ...) rides in the file's
key/value metadata, so every segment is self-describing and ingest never depends on having seen an
earlier one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from trainlight.collectors.run_header import (
    RUN_STATUSES,
    SEGMENT_FORMAT,
    STALE,
    TERMINAL_STATUSES,
    RunHeader,
    check_run_id,
    is_valid_run_id,
    make_run_id,
)
from trainlight.collectors.store_files import (
    DEFAULT_STORE_DIR,
    STORE_DIR_ENV,
    StopRequest,
    StoreLayout,
    list_segment_files,
    parse_segment_file_name,
    process_namespace,
    segment_file_name,
    write_atomically,
)

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "DEFAULT_STORE_DIR",
    "HEADER_KEY",
    "MIGRATIONS",
    "NO_LAYER",
    "RESERVED_PREFIXES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "SEGMENT_FORMAT",
    "SEGMENT_SCHEMA",
    "SEGMENT_TABLES",
    "STALE",
    "STORE_DIR_ENV",
    "TERMINAL_STATUSES",
    "RunHeader",
    "SchemaError",
    "StopRequest",
    "StoreLayout",
    "check_run_id",
    "check_segment_schema",
    "is_valid_run_id",
    "list_segment_files",
    "make_run_id",
    "migrate",
    "normalise_segment",
    "parse_segment_file_name",
    "process_namespace",
    "read_header",
    "segment_file_name",
    "segment_table",
    "write_atomically",
]

HEADER_KEY = b"trainlight.header"

# Tables a segment row can target, in the order ingest inserts them.
SEGMENT_TABLES = ("metrics", "layer_metrics", "lca_frames", "arrays")

# Metric key prefixes trainlight itself writes: not user curves, never a run's "main loss".
RESERVED_PREFIXES = ("runaway/", "catch/", "lca/", "landscape/", "trainlight/")

# `arrays` rows `act_var_hist` (one per watched layer and window): how many units have an
# activation variance in each bin. Bin 0 counts variances below 10**VAR_HIST_LOG10[0] (dead and
# near-constant units, exact zeros included); bin i (1..len-1) counts [10**e[i-1], 10**e[i]); the
# last bin counts everything from 10**e[-1] up. Units with a NaN/Inf variance are not counted.
VAR_HIST_KEY = "act_var_hist"
VAR_HIST_LOG10 = tuple(-8.0 + 0.5 * i for i in range(25))  # 1e-8 … 1e4, half-decade bins

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
    (
        # The grid's main-loss sparklines, kept by ingest (app/store/sparklines.py) so the grid
        # never scans `metrics`: the main key and bucket width (a power of two, in steps) per
        # run, and the count and sum of that key's values per bucket = floor(step / width).
        "CREATE TABLE spark_runs(run_id VARCHAR PRIMARY KEY, key VARCHAR, width BIGINT)",
        """CREATE TABLE spark_buckets(
            run_id VARCHAR, bucket BIGINT, n BIGINT, total DOUBLE, PRIMARY KEY (run_id, bucket))""",
        # Backfill, once: main key = `loss` if logged, else the first non-reserved key (rowid);
        # width = the smallest power of two that spans the key's steps in at most 240 buckets.
        """INSERT INTO spark_runs
        WITH candidates AS (
            SELECT run_id, key, rowid AS rid, step FROM metrics
            WHERE key IS NOT NULL AND NOT (starts_with(key, 'runaway/')
                  OR starts_with(key, 'catch/') OR starts_with(key, 'lca/'))
        ), main AS (
            SELECT run_id,
                   CASE WHEN bool_or(key = 'loss') THEN 'loss' ELSE arg_min(key, rid) END AS key
            FROM candidates GROUP BY run_id
        ), span AS (
            SELECT run_id, key, min(step) AS lo, max(step) AS hi
            FROM candidates JOIN main USING (run_id, key) GROUP BY run_id, key
        )
        SELECT run_id, key, min(CAST(1 AS BIGINT) << k) AS width
        FROM span, range(0, 62) AS powers(k)
        WHERE floor(hi / (CAST(1 AS BIGINT) << k)) - floor(lo / (CAST(1 AS BIGINT) << k)) < 240
        GROUP BY run_id, key""",
        """INSERT INTO spark_buckets
        SELECT m.run_id, CAST(floor(m.step / s.width) AS BIGINT) AS bucket, count(m.value),
               coalesce(sum(m.value), 0)
        FROM metrics m JOIN spark_runs s ON m.run_id = s.run_id AND m.key = s.key
        GROUP BY m.run_id, bucket""",
    ),
    (
        # The grid's LCA layer lights in model order, kept by ingest (app/store/batch_rows.py):
        # each layer with an `lca` row gets `ord` by first appearance; its light is the
        # `latest` row (run_id, 'lca', layer), so the grid never scans `layer_metrics`.
        """CREATE TABLE lca_layers(
            run_id VARCHAR, layer VARCHAR, ord BIGINT, PRIMARY KEY (run_id, layer))""",
        # Backfill, once: first appearance = the smallest rowid (insertion order).
        """INSERT INTO lca_layers
        SELECT run_id, coalesce(layer, ''), min(rowid) FROM layer_metrics
        WHERE key = 'lca' GROUP BY run_id, coalesce(layer, '')""",
    ),
    (
        # Small matrices a step produces besides scalars, row-major float32 (NaN kept): a probe
        # set's predicted probabilities (`predictions`: examples x classes), loss-surface slices
        # (`landscape/slice`: 1 x points), per-layer unit-variance histograms (`act_var_hist`).
        """CREATE TABLE arrays(
            run_id VARCHAR, step BIGINT, key VARCHAR, layer VARCHAR,
            n_rows INTEGER, n_cols INTEGER, "values" FLOAT[])""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# `latest.layer` is part of the primary key, so run-level scalars use this instead of NULL.
NO_LAYER = ""


class SchemaError(RuntimeError):
    """The store was written by a newer trainlight than this one."""


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
    exact = table.schema.equals(SEGMENT_SCHEMA, check_metadata=False)  # what our writer makes
    if not exact:
        check_segment_schema(table.schema)
    for name in ("table", "step"):
        if table[name].null_count:
            raise ValueError(f"segment column {name!r} has null values")
    kinds = set(table["table"].unique().to_pylist()) if table.num_rows else set()
    unknown = kinds - set(SEGMENT_TABLES)
    if unknown:
        raise ValueError(f"segment rows target unknown tables {sorted(map(str, unknown))}")
    if exact:
        return table
    columns = [_as_type(table[f.name], f.type) for f in SEGMENT_SCHEMA]
    return pa.Table.from_arrays(columns, schema=SEGMENT_SCHEMA).replace_schema_metadata(
        table.schema.metadata
    )


def _as_type(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray:
    return column if column.type == type_ else column.cast(type_)


def check_segment_schema(schema: pa.Schema) -> None:
    """ValueError unless `schema` has SEGMENT_SCHEMA's columns with compatible types."""
    names = set(schema.names)  # built anew on each access
    missing = [f.name for f in SEGMENT_SCHEMA if f.name not in names]
    if missing:
        raise ValueError(f"segment is missing columns {missing}")
    for fld in SEGMENT_SCHEMA:
        got = schema.field(fld.name).type
        if not _compatible(got, fld.type):
            raise ValueError(f"segment column {fld.name!r} has type {got}, expected {fld.type}")


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
