"""What a segment's Parquet footer declares, read from the raw bytes and checked against what the
collectors' writer produces, before pyarrow parses the footer or reads a page.

Why: pyarrow's Parquet reader is C++, and for some footers it throws an exception nothing
catches (`terminate called after throwing an instance of 'parquet::ParquetException'`): the
whole server dies of SIGABRT, from one POST. The fuzzer (bench/parquet_fuzz.py) found: a schema
element changed (a column's repetition OPTIONAL -> REQUIRED, or its physical type BYTE_ARRAY ->
DOUBLE, so the reader expects other levels or widths than the pages hold), a column chunk's
codec number unknown (even reading `ColumnChunkMetaData.compression` aborts), level histograms
of another length than the column's levels, an unknown repetition number. So the footer's
Thrift is read in Python (thrift_compact.py) and must declare:
- each segment column exactly as `pq.write_table` declares SEGMENT_SCHEMA (physical, logical and
  converted types, repetition of every node: hence definition and repetition levels);
- for every column chunk: the leaf's physical type and path, a codec and encodings from an
  allow-list, its data in this file (no external file path, no encryption), its bytes inside
  the file before the footer and apart from the other chunks, its dictionary page before its
  data pages, as many values as its row group has rows (at least as many for the list), and
  level histograms (SizeStatistics) of one count per level;
- every schema node's repetition and every leaf's physical type a known number, even outside
  the schema (pyarrow counts an unknown repetition's levels otherwise than its histogram's size);
- row counts that add up.
Only then does pyarrow see the file, and segment_limits.check_footer applies the size caps.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import os
import threading
from typing import Any

import pyarrow.parquet as pq

from trainlight.app.store.ingest.thrift_compact import ThriftError, read_struct
from trainlight.collectors.schema import SEGMENT_SCHEMA

# Parquet enum numbers (parquet.thrift) of what pyarrow writers produce: ours write ZSTD; SNAPPY
# is pyarrow's default. UNCOMPRESSED 0, SNAPPY 1, GZIP 2, BROTLI 4, ZSTD 6, LZ4_RAW 7.
CODECS = frozenset({0, 1, 2, 4, 6, 7})
# PLAIN 0, PLAIN_DICTIONARY 2, RLE 3, BIT_PACKED 4 (old level encoding), RLE_DICTIONARY 8.
ENCODINGS = frozenset({0, 2, 3, 4, 8})
PAGE_TYPES = frozenset({0, 1, 2, 3})  # DATA_PAGE, INDEX_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2
REQUIRED, REPEATED = 0, 2  # FieldRepetitionType (OPTIONAL is 1)
REPETITIONS = frozenset({0, 1, 2})
PHYSICAL_TYPES = frozenset(range(8))  # BOOLEAN ... FIXED_LEN_BYTE_ARRAY
_MAGIC = b"PAR1"
_TAIL = 8  # footer length (4 bytes) and "PAR1"
# SchemaElement fields that decide how a column is read (all but its name and field id).
_SHAPE = {
    1: "physical type",
    2: "type length",
    3: "repetition",
    5: "child count",
    6: "converted type",
    7: "scale",
    8: "precision",
    10: "logical type",
}
Element = dict[int, Any]


# Footers that passed, by a keyed digest of their bytes and where they start (what the check
# depends on): the server checks each segment received over HTTP before the 202 and again when
# the ingester decodes it; the second check is then a lookup (~0.5 ms less per segment).
PASSED_MEMORY = 4096
_KEY = os.urandom(16)  # per process: nobody can craft a collision with a footer that passed
_passed: dict[bytes, None] = {}
_passed_lock = threading.Lock()


class LayoutError(ValueError):
    """A footer that declares something the segment writer never writes; the message says what."""


def check_layout(payload: bytes) -> None:
    """LayoutError unless the file's footer declares the segment's columns as our writer does and
    keeps every column chunk inside the file and consistent with its rows."""
    if len(payload) < 2 * len(_MAGIC) + 4 or payload[:4] != _MAGIC or payload[-4:] != _MAGIC:
        raise LayoutError("not a Parquet file (no PAR1 magic at both ends)")
    footer_size = int.from_bytes(payload[-_TAIL:-4], "little")
    pages_end = len(payload) - _TAIL - footer_size
    if pages_end < len(_MAGIC):
        raise LayoutError(f"footer of {footer_size} bytes is larger than the file")
    footer = payload[pages_end:-_TAIL]
    where = pages_end.to_bytes(16, "little")  # < the payload's size
    digest = hashlib.blake2b(footer, digest_size=16, key=_KEY, person=where).digest()
    if digest in _passed:
        return
    try:
        metadata, _ = read_struct(footer)
        _check_metadata(metadata, pages_end)
    except ThriftError as exc:
        raise LayoutError(f"unreadable footer: {exc}") from exc
    except (TypeError, KeyError, AttributeError) as exc:  # a field of another Thrift type
        raise LayoutError(f"malformed footer field: {exc!r}") from exc
    with _passed_lock:
        if len(_passed) >= PASSED_MEMORY:
            _passed.clear()
        _passed[digest] = None


def forget_passed() -> None:
    """Forget the footers that passed (for benchmarks of the check itself)."""
    with _passed_lock:
        _passed.clear()


def _check_metadata(metadata: Element, pages_end: int) -> None:
    if 8 in metadata or 9 in metadata:
        raise LayoutError("encrypted footers are not written by the segment writer")
    leaves = _leaves(metadata[2])
    ours = _check_schema(leaves)
    total_rows = 0
    for g, group in enumerate(metadata.get(4, [])):
        rows = group[3]
        if rows < 0:
            raise LayoutError(f"row group {g} declares {rows} rows")
        total_rows += rows
        chunks = group[1]
        if len(chunks) != len(leaves):
            raise LayoutError(
                f"row group {g} has {len(chunks)} column chunks, {len(leaves)} leaves"
            )
        ranges = sorted(
            _chunk_range(chunk, leaf, rows, pages_end, f"row group {g}")
            for chunk, leaf in zip(chunks, leaves, strict=True)
        )
        for (_, end, name), (start, _, other) in itertools.pairwise(ranges):
            if start < end:
                raise LayoutError(f"row group {g}: column chunks {name} and {other} overlap")
    if total_rows != metadata[3]:
        raise LayoutError(f"row groups hold {total_rows} rows, the file declares {metadata[3]}")
    if not ours:
        raise LayoutError("no segment columns")


def _leaves(schema: list[Element]) -> list[tuple[tuple[bytes, ...], list[Element]]]:
    """Each leaf column: its path and the schema elements from its top-level field down."""
    leaves: list[tuple[tuple[bytes, ...], list[Element]]] = []
    position = 1

    def walk(children: int, parents: list[Element]) -> None:
        nonlocal position
        for _ in range(children):
            if position >= len(schema):
                raise LayoutError("schema declares more children than it has elements")
            element = schema[position]
            position += 1
            count = element.get(5, 0)
            # Levels are counted from each node's repetition: an unknown one is counted otherwise
            # by pyarrow (whose histogram size check then aborts), so all must be known.
            if count < 0 or len(parents) > 8 or element.get(3) not in REPETITIONS:
                raise LayoutError(f"schema element {element.get(4)!r} is malformed")
            if not count and element.get(1) not in PHYSICAL_TYPES:
                raise LayoutError(f"schema leaf {element.get(4)!r} has type {element.get(1)}")
            if count:
                walk(count, [*parents, element])
            else:
                path = [*parents, element]
                leaves.append((tuple(e[4] for e in path), path))

    if not schema:
        raise LayoutError("empty schema")
    walk(schema[0].get(5, 0), [])
    if position != len(schema):
        raise LayoutError("schema has elements outside its tree")
    return leaves


def _shape(path: list[Element]) -> list[tuple[Any, ...]]:
    return [tuple(map(element.get, _SHAPE)) for element in path]


@functools.cache
def expected_shapes() -> dict[bytes, list[tuple[Any, ...]]]:
    """Each segment column's schema elements (top-level field down to its leaf) as pyarrow
    writes SEGMENT_SCHEMA, keyed by column name."""
    out = io.BytesIO()
    pq.write_table(SEGMENT_SCHEMA.empty_table(), out)
    payload = out.getvalue()
    footer_size = int.from_bytes(payload[-_TAIL:-4], "little")
    metadata, _ = read_struct(payload, len(payload) - _TAIL - footer_size)
    return {path[0]: _shape(elements) for path, elements in _leaves(metadata[2])}


def _check_schema(leaves: list[tuple[tuple[bytes, ...], list[Element]]]) -> set[bytes]:
    """The segment columns found, each declared as the writer declares it."""
    expected = expected_shapes()
    found: set[bytes] = set()
    for path, elements in leaves:
        name = path[0]
        if name not in expected:
            continue  # never decoded: only its chunk's bounds are checked
        if name in found:
            raise LayoutError(f"segment column {name!r} has more than one Parquet leaf")
        found.add(name)
        if _shape(elements) != expected[name]:
            raise LayoutError(_difference(name, _shape(elements), expected[name]))
    return found


def _difference(name: bytes, got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> str:
    column = repr(name.decode(errors="replace"))
    if len(got) != len(want):
        return f"segment column {column} is {len(got)} levels deep, the writer's {len(want)}"
    for level, (mine, theirs) in enumerate(zip(got, want, strict=True)):
        for what, a, b in zip(_SHAPE.values(), mine, theirs, strict=True):
            if a != b:
                return f"segment column {column} level {level} has {what} {a}, the writer's {b}"
    return f"segment column {column} differs from the writer's"


def _chunk_range(
    chunk: Element,
    leaf: tuple[tuple[bytes, ...], list[Element]],
    rows: int,
    pages_end: int,
    where: str,
) -> tuple[int, int, str]:
    path, elements = leaf
    name = b".".join(path).decode(errors="replace")
    meta = chunk.get(3)
    if meta is None or 1 in chunk or 8 in chunk or 9 in chunk:
        raise LayoutError(f"{where}: column {name} is elsewhere (external file or encrypted)")
    if meta[1] != elements[-1].get(1) or tuple(meta[3]) != path:
        raise LayoutError(f"{where}: column chunk {name} does not match its schema leaf")
    if meta[4] not in CODECS:
        raise LayoutError(f"{where}: column {name} uses codec number {meta[4]}")
    stats = meta.get(13, [])
    encodings = set(meta[2]) | {s.get(2) for s in stats}
    if not encodings <= ENCODINGS or not {s.get(1) for s in stats} <= PAGE_TYPES:
        raise LayoutError(f"{where}: column {name} uses encodings {sorted(map(str, encodings))}")
    data, size, values = meta[9], meta[7], meta[5]
    start = meta.get(11, data)
    end = start + size
    # A chunk of no values (an empty heartbeat segment) has a dictionary page only: data at 0.
    no_data = data == 0 and values == 0 and 11 in meta
    if not (len(_MAGIC) <= start < end <= pages_end and (no_data or start <= data < end)):
        raise LayoutError(
            f"{where}: column {name} declares pages at bytes {start}..{end} (data from {data}), "
            f"outside {len(_MAGIC)}..{pages_end}"
        )
    if meta[6] < 0:
        raise LayoutError(f"{where}: column {name} declares {meta[6]} bytes uncompressed")
    max_repetition = sum(e.get(3) == REPEATED for e in elements)
    if values < rows or (values != rows and not max_repetition):  # a list: >= 1 value a row
        raise LayoutError(f"{where}: column {name} declares {values} values for {rows} rows")
    _check_level_histograms(meta.get(16, {}), elements, max_repetition, f"{where}: column {name}")
    return start, end, name


def _check_level_histograms(
    sizes: Element, elements: list[Element], max_repetition: int, what: str
) -> None:
    """SizeStatistics' level histograms have one count per level, 0..max, or none: pyarrow
    aborts on another length ("Definition level histogram size mismatch")."""
    max_definition = sum(e.get(3) != REQUIRED for e in elements)
    for field_id, levels, kind in (
        (2, max_repetition, "repetition"),
        (3, max_definition, "definition"),
    ):
        histogram = sizes.get(field_id, [])
        if len(histogram) not in (0, levels + 1):
            raise LayoutError(f"{what} has a {kind} level histogram of {len(histogram)} counts")
    if sizes.get(1, 0) < 0:
        raise LayoutError(f"{what} declares {sizes[1]} unencoded bytes")


__all__ = [
    "CODECS",
    "ENCODINGS",
    "LayoutError",
    "check_layout",
    "expected_shapes",
    "forget_passed",
]
