"""A Parquet file's footer as editable Thrift (compact protocol), for crafting damaged segments.

Parquet's footer is a Thrift `FileMetaData` struct in the compact protocol, followed by its
length (4 bytes, little-endian) and `PAR1`. The server's reader (app/store/ingest/thrift_compact.py)
gives dicts, which lose the order and types a rewrite needs; this reads any compact-protocol
struct into nested Python lists, `[[field_id, type, value], ...]`, and writes it back byte for
byte, so a test or the fuzzer (bench/parquet_fuzz.py) can change one declared value (a column
chunk's offset, a value count, a codec) and rebuild a file that is consistent in every other
respect.
Field ids are those of parquet.thrift, e.g. FileMetaData.row_groups = 4, RowGroup.columns = 1,
ColumnChunk.meta_data = 3, ColumnMetaData.num_values = 5.
"""

from __future__ import annotations

import struct
from typing import Any

from trainlight.app.store.ingest.thrift_compact import (
    BINARY,
    BYTE,
    DOUBLE,
    FALSE,
    I16,
    I32,
    I64,
    LIST,
    MAP,
    SET,
    STOP,
    STRUCT,
    TRUE,
)

Struct = list[list[Any]]  # [[field_id, type, value], ...] in file order


class Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int) -> Any:
        if kind in (TRUE, FALSE):
            return kind == TRUE
        if kind == BYTE:
            return self.byte()
        if kind in (I16, I32, I64):
            return self.zigzag()
        if kind == DOUBLE:
            self.pos += 8
            return struct.unpack("<d", self.data[self.pos - 8 : self.pos])[0]
        if kind == BINARY:
            n = self.varint()
            self.pos += n
            return bytes(self.data[self.pos - n : self.pos])
        if kind in (LIST, SET):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            element = head & 0x0F
            items = [
                self.byte() == TRUE if element in (TRUE, FALSE) else self.value(element)
                for _ in range(size)
            ]
            return [element, items]
        if kind == MAP:
            size = self.varint()
            types = self.byte() if size else 0
            pairs = [(self.value(types >> 4), self.value(types & 0x0F)) for _ in range(size)]
            return [types, pairs]
        if kind == STRUCT:
            return self.struct()
        raise ValueError(f"unknown Thrift compact type {kind} at byte {self.pos}")

    def struct(self) -> Struct:
        fields: Struct = []
        last = 0
        while True:
            head = self.byte()
            if head == STOP:
                return fields
            delta, kind = head >> 4, head & 0x0F
            field_id = last + delta if delta else self.zigzag()
            fields.append([field_id, kind, self.value(kind)])
            last = field_id


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63) if n < 0 else n << 1)


def encode_value(kind: int, value: Any) -> bytes:
    if kind in (TRUE, FALSE):
        return b""
    if kind == BYTE:
        return bytes([value & 0xFF])
    if kind in (I16, I32, I64):
        return _zigzag(value)
    if kind == DOUBLE:
        return struct.pack("<d", value)
    if kind == BINARY:
        return _varint(len(value)) + value
    if kind in (LIST, SET):
        element, items = value
        head = (
            bytes([len(items) << 4 | element])
            if len(items) < 15
            else (bytes([0xF0 | element]) + _varint(len(items)))
        )
        if element in (TRUE, FALSE):
            return head + bytes(TRUE if item else FALSE for item in items)
        return head + b"".join(encode_value(element, item) for item in items)
    if kind == MAP:
        types, pairs = value
        if not pairs:
            return b"\x00"
        body = b"".join(
            encode_value(types >> 4, k) + encode_value(types & 0x0F, v) for k, v in pairs
        )
        return _varint(len(pairs)) + bytes([types]) + body
    if kind == STRUCT:
        return encode_struct(value)
    raise ValueError(f"unknown Thrift compact type {kind}")


def encode_struct(fields: Struct) -> bytes:
    out = bytearray()
    last = 0
    for field_id, kind, value in fields:
        if kind in (TRUE, FALSE):
            kind = TRUE if value else FALSE
        delta = field_id - last
        if 0 < delta <= 15:
            out.append(delta << 4 | kind)
        else:
            out.append(kind)
            out += _zigzag(field_id)
        out += encode_value(kind, value)
        last = field_id
    out.append(STOP)
    return bytes(out)


def split_footer(payload: bytes) -> tuple[bytes, Struct]:
    """The bytes before the footer, and the footer's FileMetaData."""
    if payload[-4:] != b"PAR1":
        raise ValueError("not a Parquet file")
    length = int.from_bytes(payload[-8:-4], "little")
    start = len(payload) - 8 - length
    return payload[:start], Reader(payload, start).struct()


def join_footer(body: bytes, metadata: Struct) -> bytes:
    footer = encode_struct(metadata)
    return body + footer + len(footer).to_bytes(4, "little") + b"PAR1"


def field(fields: Struct, field_id: int) -> list[Any]:
    """The `[field_id, type, value]` entry of a struct (KeyError if absent)."""
    for entry in fields:
        if entry[0] == field_id:
            return entry
    raise KeyError(field_id)


def column_meta(metadata: Struct, group: int, column: int) -> Struct:
    """FileMetaData.row_groups[group].columns[column].meta_data."""
    groups = field(metadata, 4)[2][1]
    chunks = field(groups[group], 1)[2][1]
    return field(chunks[column], 3)[2]


def page_header(payload: bytes, offset: int) -> tuple[Struct, int]:
    """The PageHeader at `offset`, and the offset where it ends (its page data begins)."""
    reader = Reader(payload, offset)
    header = reader.struct()
    return header, reader.pos
