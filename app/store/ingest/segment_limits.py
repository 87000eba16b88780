"""Cheap checks of a segment before it is acknowledged: caps read from the Parquet footer, the run
header scanned before it is parsed, and the few columns the ingester's keys depend on.

Why here, before the 202: what the server acknowledges, the collector deletes, so everything the
ingester would refuse must be refused while the collector still holds its copy. And why without a
full decode: a 3.6 KiB file can hold one list of 250M floats (a decompression bomb); the footer
tells the row count, each column chunk's value count and uncompressed size without decompressing
anything, so the caps hold before a byte of page data is expanded. The header JSON is scanned for
its nesting depth without recursion before `json.loads` sees it. The columns read afterwards
(`table`, `step`, `key`, `wall_time`) are bounded by the caps already checked; the `values` lists
are decoded once, by the ingester. The ingester applies the same checks (`decode_segment`), so a
segment that reached the inbox another way is quarantined rather than decoded.
"""

from __future__ import annotations

import itertools
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainlight.app.store.ingest.segment_layout import LayoutError, check_layout
from trainlight.collectors.schema import (
    HEADER_KEY,
    SEGMENT_SCHEMA,
    SEGMENT_TABLES,
    RunHeader,
    check_segment_schema,
)

MAX_ROWS = 1_000_000
MAX_UNCOMPRESSED_BYTES = 256 * 1024 * 1024  # all column chunks together, as the footer says
MAX_DECODED_BYTES = 256 * 1024 * 1024  # the Arrow table the ingester builds, estimated
MAX_LIST_VALUES = 16 * 1024 * 1024  # float32 values (64 MiB) in a segment's `values` lists
MAX_HEADER_BYTES = 1024 * 1024
MAX_HEADER_DEPTH = 32  # nested JSON objects/lists in the run header (its config included)
MAX_ABS_STEP = 2**53  # exact in a float64, far from int64 overflow in bucket arithmetic
MAX_WALL_TIME_US = 10**17  # unix microseconds, year ~5138; the header's clock fields say 1e11 s
KEYED_TABLES = ("metrics", "layer_metrics")  # their key is part of `latest`'s primary key
DICTIONARY_COLUMNS = ("table", "key", "layer")  # read as dictionaries: a repeated string once
_WIDTHS = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class LimitError(ValueError):
    """A segment over a cap or with values the store cannot take; the message names which."""


def check_footer(metadata: pq.FileMetaData) -> None:
    """Rows, uncompressed size, list values and decoded size from the footer alone (nothing
    decoded). The footer's "uncompressed" size is that of the encoded pages, which a run-length
    or dictionary encoding keeps tiny for a billion zeros; what bounds memory is each column
    chunk's value count times its width (strings: 4-byte indices, as they are read as
    dictionaries, plus their pages). Columns outside the schema are never decoded."""
    rows = metadata.num_rows
    uncompressed = decoded = list_values = 0
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        rows = max(rows, group.num_rows)
        for c in range(group.num_columns):
            chunk = group.column(c)
            uncompressed += max(chunk.total_uncompressed_size, 0)
            name = chunk.path_in_schema.split(".")[0]
            if name not in SEGMENT_SCHEMA.names:
                continue
            decoded += max(chunk.num_values, 0) * _WIDTHS.get(chunk.physical_type, 4)
            if chunk.physical_type in ("BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"):
                decoded += max(chunk.total_uncompressed_size, 0)
            if name == "values":
                list_values += max(chunk.num_values, 0)
    _cap(rows, MAX_ROWS, "segment has {} rows")
    _cap(uncompressed, MAX_UNCOMPRESSED_BYTES, "segment pages hold {} bytes uncompressed")
    _cap(list_values, MAX_LIST_VALUES, "segment lists hold {} values")
    _cap(decoded, MAX_DECODED_BYTES, "segment decodes to about {} bytes")


def _cap(value: int, cap: int, what: str) -> None:
    if value > cap:
        raise LimitError(f"{what.format(value)}, more than {cap}")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of objects/lists in a JSON text, by a flat scan (no recursion):
    strings are dropped first, so brackets inside them do not count."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    steps = (1 if b in b"[{" else -1 for b in brackets)
    return max(itertools.accumulate(steps), default=0)


def parse_header(raw: bytes) -> RunHeader:
    """The run header, its size and depth checked before `json.loads` sees it."""
    if len(raw) > MAX_HEADER_BYTES:
        raise LimitError(f"run header has {len(raw)} bytes, more than {MAX_HEADER_BYTES}")
    depth = json_depth(raw)
    if depth > MAX_HEADER_DEPTH:
        raise LimitError(f"run header is nested {depth} deep, more than {MAX_HEADER_DEPTH}")
    try:
        return RunHeader.from_bytes(raw)
    except (ValueError, TypeError, RecursionError) as exc:
        raise LimitError(f"invalid run header: {exc}") from exc


def header_bytes(schema: pa.Schema) -> bytes:
    metadata = schema.metadata or {}
    if HEADER_KEY not in metadata:
        raise LimitError("not a trainlight segment: the Parquet metadata has no run header")
    return bytes(metadata[HEADER_KEY])


def check_rows(table: pa.Table) -> None:
    """Row values the store cannot take: unknown or null targets, steps out of the safe range,
    rows of keyed tables without a key, clock values out of range. `table` needs the columns
    `table`, `step`, `key` and `wall_time` (any others are ignored)."""
    if table.num_rows == 0:
        return
    for name in ("table", "step"):
        if table[name].null_count:
            raise LimitError(f"segment column {name!r} has null values")
    kinds = set(table["table"].unique().to_pylist())
    unknown = kinds - set(SEGMENT_TABLES)
    if unknown:
        raise LimitError(f"segment rows target unknown tables {sorted(map(str, unknown))}")
    _check_range(table["step"], MAX_ABS_STEP, "step")
    wall = table["wall_time"].cast(pa.int64())
    _check_range(wall, MAX_WALL_TIME_US, "wall_time (microseconds)")
    if not table["key"].null_count:
        return
    keyed = pc.is_in(table["table"].cast(pa.string()), pa.array(KEYED_TABLES))
    nulls = pc.sum(pc.and_(keyed, pc.is_null(table["key"]))).as_py() or 0
    if nulls:
        raise LimitError(f"{nulls} rows of {'/'.join(KEYED_TABLES)} have no key")


def check_row_count(table: pa.Table, declared: int) -> None:
    """The rows decoded are the rows the footer declared (the caps were checked on those): a
    footer that lies about its pages consistently passes segment_layout, not this."""
    if table.num_rows != declared:
        raise LimitError(
            f"segment footer declares {declared} rows, its pages hold {table.num_rows}"
        )


def _check_range(column: pa.ChunkedArray, bound: int, what: str) -> None:
    extremes = pc.min_max(column)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if low is not None and not (-bound < low and high < bound):
        raise LimitError(f"segment {what} values [{low}, {high}] outside (-{bound}, {bound})")


def open_segment(payload: bytes) -> pq.ParquetFile:
    """The segment's Parquet file, its footer checked against what our writer declares
    (segment_layout) before pyarrow parses it, nothing decoded; strings read as dictionaries
    whatever type the writer declared."""
    try:
        check_layout(payload)
    except LayoutError as exc:
        raise LimitError(f"footer does not describe a trainlight segment: {exc}") from exc
    return pq.ParquetFile(pa.BufferReader(payload), read_dictionary=DICTIONARY_COLUMNS)


def check_segment(payload: bytes) -> RunHeader:
    """Everything the ingester would refuse, checked without decoding the value lists; the run
    header, or LimitError naming the problem (fit for a 4xx reply)."""
    try:
        parquet = open_segment(payload)
        check_footer(parquet.metadata)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise LimitError(f"not a readable Parquet file: {exc}") from exc
    header = parse_header(header_bytes(schema))
    try:
        check_segment_schema(schema)
        keys = parquet.read(columns=["table", "step", "key", "wall_time"], use_threads=False)
        check_row_count(keys, parquet.metadata.num_rows)
        check_rows(keys)
    except LimitError:
        raise
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as exc:
        # A damaged file can decode to columns of other names or types than its schema says.
        raise LimitError(f"unreadable segment columns: {exc}") from exc
    return header


__all__ = [
    "LimitError",
    "check_footer",
    "check_row_count",
    "check_rows",
    "check_segment",
    "json_depth",
    "open_segment",
]
