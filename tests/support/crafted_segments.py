"""Valid segments with one footer value changed, each as the fuzzer (bench/parquet_fuzz.py)
found them: the first five make an unguarded pyarrow read abort the process (SIGABRT from an
uncaught `parquet::ParquetException`), the last two lie about how many values the pages hold."""

from __future__ import annotations

import io
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.parquet_thrift import Struct, column_meta, field, join_footer, split_footer
from tests.support.segments import metrics_segment

ROWS = 20
REQUIRED, OPTIONAL = 0, 1  # FieldRepetitionType
DOUBLE = 5  # parquet Type


def valid(run_id: str, seq: int = 0) -> bytes:
    return metrics_segment(run_id, seq, [(i, "loss", 0.5 * i) for i in range(ROWS)])


def _schema_element(metadata: Struct, name: bytes) -> Struct:
    return next(e for e in field(metadata, 2)[2][1] if field(e, 4)[2] == name)


def key_required(payload: bytes) -> bytes:
    """The `key` column declared REQUIRED while its pages hold definition levels (aborts)."""
    body, metadata = split_footer(payload)
    field(_schema_element(metadata, b"key"), 3)[2] = REQUIRED
    return join_footer(body, metadata)


def key_as_double(payload: bytes) -> bytes:
    """The `key` column's schema type DOUBLE where its pages hold strings (aborts)."""
    body, metadata = split_footer(payload)
    field(_schema_element(metadata, b"key"), 1)[2] = DOUBLE
    return join_footer(body, metadata)


def unknown_codec(payload: bytes) -> bytes:
    """The `value` chunk's codec number 12, which no Parquet version defines (aborts on a mere
    read of `ColumnChunkMetaData.compression`)."""
    body, metadata = split_footer(payload)
    field(column_meta(metadata, 0, 4), 4)[2] = 12
    return join_footer(body, metadata)


def long_histogram(payload: bytes) -> bytes:
    """The `key` chunk's definition level histogram with 3 counts for its 2 levels (aborts)."""
    body, metadata = split_footer(payload)
    sizes = field(column_meta(metadata, 0, 2), 16)[2]
    field(sizes, 3)[2] = [6, [0, ROWS, 0]]  # a list of i64
    return join_footer(body, metadata)


def unknown_repetition_outside_the_schema(payload: bytes) -> bytes:
    """A column outside the schema (never decoded) added as a list of numbers, its list node's
    repetition an unknown number: pyarrow counts its levels otherwise than its level
    histogram's size says (aborts, in `ColumnChunkMetaData` already)."""
    table = pq.read_table(pa.BufferReader(payload))
    extra = pa.array([[i, None] for i in range(table.num_rows)], pa.list_(pa.int64()))
    out = io.BytesIO()
    pq.write_table(table.append_column("extra", extra), out, compression="zstd")
    body, metadata = split_footer(out.getvalue())
    field(_schema_element(metadata, b"extra"), 3)[2] = 3632
    return join_footer(body, metadata)


def lying_value_count(payload: bytes) -> bytes:
    """The `step` chunk declares fewer values than the row group's rows."""
    body, metadata = split_footer(payload)
    field(column_meta(metadata, 0, 1), 5)[2] = ROWS - 1
    return join_footer(body, metadata)


def lying_row_count(payload: bytes) -> bytes:
    """The file, its row group and every chunk declare 25 rows; the pages hold 20."""
    body, metadata = split_footer(payload)
    field(metadata, 3)[2] = ROWS + 5
    group = field(metadata, 4)[2][1][0]
    field(group, 3)[2] = ROWS + 5
    for column in range(len(field(group, 1)[2][1])):
        field(column_meta(metadata, 0, column), 5)[2] = ROWS + 5
    return join_footer(body, metadata)


ABORTING: dict[str, Callable[[bytes], bytes]] = {
    "key declared REQUIRED": key_required,
    "key declared DOUBLE": key_as_double,
    "codec number 12": unknown_codec,
    "definition level histogram of 3": long_histogram,
    "unknown repetition outside the schema": unknown_repetition_outside_the_schema,
}
LYING: dict[str, Callable[[bytes], bytes]] = {
    "step value count": lying_value_count,
    "row count": lying_row_count,
}
