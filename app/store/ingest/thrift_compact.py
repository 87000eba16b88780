"""A reader of Thrift's compact protocol, enough to read a Parquet footer without pyarrow.

Why in Python: pyarrow's accessors of footer fields are C++ that can throw where nothing catches
(an unknown codec number in `ColumnChunkMetaData.compression` aborts the process), so what an
untrusted footer declares is read here first, as plain numbers, bytes and lists, and checked
(segment_layout.py). Plain functions over (bytes, position), small numbers and structs read
inline: a segment's 3 KiB footer reads in ~0.3 ms. A struct is `{field_id: value}`; a list is a
Python list; a map a list of pairs. Every read is bounded by the bytes given (a count larger
than the bytes left fails at the end of the data) and by `MAX_DEPTH` of nesting; any
malformation raises ThriftError.
"""

from __future__ import annotations

import struct
from typing import Any

STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)
MAX_DEPTH = 16  # a Parquet footer nests 5 deep (FileMetaData.row_groups.columns.meta_data...)


class ThriftError(ValueError):
    """Bytes that are not a well-formed compact-protocol struct."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80:  # most numbers in a footer fit in one byte
        return b, pos + 1
    result, shift = b & 0x7F, 7
    while shift < 70:
        pos += 1
        b = data[pos]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + 1
        shift += 7
    raise ThriftError(f"varint longer than 10 bytes at byte {pos}")


def _value(data: bytes, pos: int, kind: int, depth: int) -> tuple[Any, int]:
    if kind in (I32, I64, I16):
        n, pos = _varint(data, pos)
        return (n >> 1) ^ -(n & 1), pos
    if kind == BINARY:
        n, pos = _varint(data, pos)
        if pos + n > len(data):
            raise ThriftError(f"{n} bytes declared at byte {pos}, past the end")
        return data[pos : pos + n], pos + n
    if kind == STRUCT:
        return _struct(data, pos, depth + 1)
    if kind in (LIST, SET):
        head = data[pos]
        pos += 1
        size, element = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(data, pos)
        if size > len(data) - pos:  # every element takes at least one byte
            raise ThriftError(f"list of {size} elements at byte {pos}, past the end")
        items = []
        for _ in range(size):
            if element in (TRUE, FALSE):
                item: Any = data[pos] == TRUE
                pos += 1
            else:
                item, pos = _value(data, pos, element, depth + 1)
            items.append(item)
        return items, pos
    if kind in (TRUE, FALSE):
        return kind == TRUE, pos
    if kind == BYTE:
        return data[pos], pos + 1
    if kind == DOUBLE:
        if pos + 8 > len(data):
            raise ThriftError(f"double at byte {pos}, past the end")
        return struct.unpack_from("<d", data, pos)[0], pos + 8
    if kind == MAP:
        size, pos = _varint(data, pos)
        if size > len(data) - pos:
            raise ThriftError(f"map of {size} entries at byte {pos}, past the end")
        types = data[pos] if size else 0
        pos += 1 if size else 0
        pairs = []
        for _ in range(size):
            key, pos = _value(data, pos, types >> 4, depth + 1)
            value, pos = _value(data, pos, types & 0x0F, depth + 1)
            pairs.append((key, value))
        return pairs, pos
    raise ThriftError(f"unknown compact type {kind} at byte {pos}")


def _struct(data: bytes, pos: int, depth: int) -> tuple[dict[int, Any], int]:
    if depth > MAX_DEPTH:
        raise ThriftError(f"structs nested more than {MAX_DEPTH} deep")
    fields: dict[int, Any] = {}
    last = 0
    while True:
        head = data[pos]
        pos += 1
        if head == STOP:
            return fields, pos
        delta, kind = head >> 4, head & 0x0F
        if delta:
            field_id = last + delta
        else:
            n, pos = _varint(data, pos)
            field_id = (n >> 1) ^ -(n & 1)
        # The common kinds inline (a function call costs as much as reading a small number).
        if kind in (I32, I64):
            n = data[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(data, pos)
            fields[field_id] = (n >> 1) ^ -(n & 1)
        elif kind == STRUCT:
            fields[field_id], pos = _struct(data, pos, depth + 1)
        else:
            fields[field_id], pos = _value(data, pos, kind, depth)
        last = field_id


def read_struct(data: bytes, offset: int = 0) -> tuple[dict[int, Any], int]:
    """The struct at `offset` and the offset just past it; ThriftError if malformed or if it
    runs past the end of `data`."""
    try:
        return _struct(data, offset, 0)
    except IndexError as exc:
        raise ThriftError("struct runs past the end of its bytes") from exc


__all__ = ["MAX_DEPTH", "ThriftError", "read_struct"]
