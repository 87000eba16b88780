"""The segment file format, reserved keys and run-id rules: the wire between collectors and server.

This is the one module the writer (collectors, inside training processes) and the reader (the
server's ingester and the dashboard) share; the DuckDB tables and their migrations are the
server's alone (app/store/migrations.py). It imports neither torch nor dash, so the dashboard
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
from typing import Any

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

__all__ = [
    "DEFAULT_STORE_DIR",
    "HEADER_KEY",
    "NO_LAYER",
    "RESERVED_PREFIXES",
    "RUN_STATUSES",
    "SEGMENT_FORMAT",
    "SEGMENT_SCHEMA",
    "SEGMENT_TABLES",
    "STALE",
    "STORE_DIR_ENV",
    "TERMINAL_STATUSES",
    "RunHeader",
    "StopRequest",
    "StoreLayout",
    "check_run_id",
    "check_segment_schema",
    "is_valid_run_id",
    "list_segment_files",
    "make_run_id",
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
RESERVED_PREFIXES = (
    "runaway/",
    "catch/",
    "lca/",
    "landscape/",
    "spike/",
    "overfit/",
    "progress/",
    "system/",
    "trainlight/",
)

# `arrays` rows `act_var_hist` (one per watched layer and window): how many units have an
# activation variance in each bin. Bin 0 counts variances below 10**VAR_HIST_LOG10[0] (dead and
# near-constant units, exact zeros included); bin i (1..len-1) counts [10**e[i-1], 10**e[i]); the
# last bin counts everything from 10**e[-1] up. Units with a NaN/Inf variance are not counted.
VAR_HIST_KEY = "act_var_hist"
VAR_HIST_LOG10 = tuple(-8.0 + 0.5 * i for i in range(25))  # 1e-8 … 1e4, half-decade bins

# Dictionary indices are int32 throughout: the server reads string columns as dictionaries
# (`read_dictionary`), which Parquet gives back with int32 indices whatever the writer used, so
# a segment read back equals this schema and skips the column casts (a third of a small
# segment's decode with the int8 `table` column the schema had before).
SEGMENT_SCHEMA = pa.schema(
    [
        pa.field("table", pa.dictionary(pa.int32(), pa.string()), nullable=False),
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


# `latest.layer` is part of the primary key, so run-level scalars use this instead of NULL.
NO_LAYER = ""


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
    if schema.equals(SEGMENT_SCHEMA, check_metadata=False):  # what our writer makes: at once
        return
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
