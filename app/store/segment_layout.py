"""What a segment's Parquet footer declares, checked against what the collectors' writer produces,
before pyarrow reads a single page.

Why: pyarrow's Parquet reader is C++, and for some footers that contradict their pages it throws
an exception nothing catches (`terminate called after throwing an instance of
'parquet::ParquetException'`): the whole server dies of SIGABRT, from one POST. The fuzzer
(bench/parquet_fuzz.py) found such footers by changing one schema element: a column's
repetition (OPTIONAL -> REQUIRED or an invalid enum value) or its physical type (BYTE_ARRAY ->
DOUBLE), so the reader expects other levels or widths than the pages hold. So each column the
server decodes must be declared exactly as `pq.write_table` declares SEGMENT_SCHEMA: physical
type, logical type, definition and repetition levels. The rest bounds what the reader may touch:
codecs and encodings from an allow-list, each column chunk's bytes inside the file (before the
footer) and apart from the others, its dictionary page before its data pages, and value counts
consistent with the row count. Columns outside the schema are never decoded, so only their sizes
count (segment_limits.check_footer).
"""

from __future__ import annotations

import functools
import io

import pyarrow.parquet as pq

from trainlight.collectors.schema import SEGMENT_SCHEMA

# What pyarrow writers produce (ours: zstd; snappy is pyarrow's default).
CODECS = frozenset({"UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD", "LZ4_RAW", "BROTLI"})
ENCODINGS = frozenset({"PLAIN", "PLAIN_DICTIONARY", "RLE", "RLE_DICTIONARY", "BIT_PACKED"})
_MAGIC = 4  # "PAR1" at the start of the file
_TAIL = 8  # footer length and "PAR1" at the end

Leaf = tuple[str, str, str, int, int]  # physical type, logical type, converted, max def/rep


class LayoutError(ValueError):
    """A footer that declares something the segment writer never writes; the message says what."""


def _leaf(column: pq.ColumnSchema) -> Leaf:
    return (
        column.physical_type,
        str(column.logical_type),
        column.converted_type,
        column.max_definition_level,
        column.max_repetition_level,
    )


@functools.cache
def expected_leaves() -> dict[str, Leaf]:
    """Each segment column's Parquet leaf as pyarrow writes SEGMENT_SCHEMA (keyed by top name)."""
    out = io.BytesIO()
    pq.write_table(SEGMENT_SCHEMA.empty_table(), out)
    schema = pq.ParquetFile(io.BytesIO(out.getvalue())).schema
    return {schema.column(i).path.split(".")[0]: _leaf(schema.column(i)) for i in range(len(schema))}


def check_layout(metadata: pq.FileMetaData, file_size: int) -> None:
    """LayoutError unless the footer declares the segment's columns as our writer does and keeps
    every column chunk the reader will decode inside the file and consistent with its rows."""
    decoded = _check_schema(metadata.schema)
    pages_end = file_size - _TAIL - metadata.serialized_size
    total_rows = 0
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        if group.num_rows < 0:
            raise LayoutError(f"row group {g} declares {group.num_rows} rows")
        total_rows += group.num_rows
        if group.num_columns != len(metadata.schema):
            raise LayoutError(f"row group {g} has {group.num_columns} column chunks")
        ranges = []
        for c in decoded:
            chunk = group.column(c)
            ranges.append(_chunk_range(chunk, group.num_rows, pages_end, f"row group {g}"))
        ranges.sort()
        for (_, end, name), (start, _, other) in zip(ranges, ranges[1:]):
            if start < end:
                raise LayoutError(f"row group {g}: column chunks {name} and {other} overlap")
    if total_rows != metadata.num_rows:
        raise LayoutError(f"row groups hold {total_rows} rows, the file declares {metadata.num_rows}")


def _check_schema(schema: pq.ParquetSchema) -> list[int]:
    """The leaf indices of the segment's columns, each checked against the writer's."""
    expected = expected_leaves()
    found: dict[str, int] = {}
    for i in range(len(schema)):
        column = schema.column(i)
        name = column.path.split(".")[0]
        if name not in expected:
            continue
        if name in found:
            raise LayoutError(f"segment column {name!r} has more than one Parquet leaf")
        found[name] = i
        if _leaf(column) != expected[name]:
            raise LayoutError(
                f"segment column {name!r} is declared as {_leaf(column)}, "
                f"the segment writer declares {expected[name]}"
            )
    return sorted(found.values())


def _chunk_range(
    chunk: pq.ColumnChunkMetaData, rows: int, pages_end: int, where: str
) -> tuple[int, int, str]:
    name = chunk.path_in_schema
    if chunk.compression not in CODECS:
        raise LayoutError(f"{where}: column {name} uses codec {chunk.compression}")
    unknown = set(chunk.encodings) - ENCODINGS
    if unknown:
        raise LayoutError(f"{where}: column {name} uses encodings {sorted(unknown)}")
    data = chunk.data_page_offset
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else data
    end = start + chunk.total_compressed_size
    # A chunk of no values (an empty heartbeat segment) has a dictionary page only: offset 0.
    no_data = data == 0 and chunk.num_values == 0 and chunk.has_dictionary_page
    if not (_MAGIC <= start < end <= pages_end and (no_data or start <= data < end)):
        raise LayoutError(
            f"{where}: column {name} declares pages at bytes {start}..{end} (data from {data}), "
            f"outside {_MAGIC}..{pages_end}"
        )
    repeated = expected_leaves()[name.split(".")[0]][4] > 0  # a list: values >= rows
    if chunk.num_values < rows or (chunk.num_values != rows and not repeated):
        raise LayoutError(f"{where}: column {name} declares {chunk.num_values} values for {rows} rows")
    return start, end, name


__all__ = ["CODECS", "ENCODINGS", "LayoutError", "check_layout", "expected_leaves"]
