"""Damaged segments for fuzzing the server's readers, and each one's fate in a forked child.

The mutations and the child-process harness of bench/parquet_fuzz.py (which says why), here so
that a bounded run is also a regression test (tests/app/store/test_segment_layout.py).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.parquet_thrift import (
    I16,
    I32,
    I64,
    LIST,
    STRUCT,
    Struct,
    encode_struct,
    field,
    join_footer,
    page_header,
    split_footer,
)
from trainlight.app.store.ingest.segment_limits import LimitError, check_segment
from trainlight.app.store.ingest.transaction import SegmentError, decode_segment
from trainlight.collectors.schema import RunHeader
from trainlight.collectors.writer import encode_segment

TARGETS: dict[str, Callable[[bytes], Any]] = {
    "check_segment": check_segment,
    "decode_segment": decode_segment,
}
# The exception each target refuses with (the API answers 422, the ingester quarantines); any
# other exception is a finding too ("raise!": a 500 from the API).
REFUSALS: dict[str, type[Exception]] = {
    "check_segment": LimitError,
    "decode_segment": SegmentError,
}
CHILD_TIMEOUT_S = 10.0
Leaf = tuple[list[Any], int, bool]  # a container, the index of an integer in it, is it a list


def seed_segment(rows: int = 20) -> bytes:
    """A small valid segment as the collectors write it."""
    keys = ("loss", "lr", "grad_norm", "acc")
    columns = {
        "table": ["metrics"] * rows,
        "step": [i // len(keys) for i in range(rows)],
        "key": [keys[i % len(keys)] for i in range(rows)],
        "value": [0.5 * i for i in range(rows)],
        "wall_time": [1_700_000_000_000_000 + i for i in range(rows)],
    }
    header = RunHeader(run_id="fuzz-run", seq=0, name="fuzz", started_at=1.7e9, sent_at=1.7e9)
    return encode_segment([columns], header)


def list_segment() -> bytes:
    """A small valid segment with list values (LCA frames and arrays rows), as the collectors
    write them: its `values` column has pages with repetition levels."""
    columns = {
        "table": ["lca_frames", "arrays", "arrays", "metrics"],
        "step": [1, 2, 3, 4],
        "layer": ["fc1", None, None, None],
        "key": [None, "predictions", "act_var_hist", "loss"],
        "value": [None, None, None, 0.25],
        "n_rows": [1, None, None, None],
        "n_cols": [2, None, None, None],
        "values": [[0.5, 1.5], [2.0, 3.0, 4.0], [], None],
    }
    header = RunHeader(run_id="fuzz-run", seq=1, name="fuzz", started_at=1.7e9, sent_at=1.7e9)
    return encode_segment([columns], header)


def extra_column_segment() -> bytes:
    """A valid segment with a column outside the schema (a newer writer's), never decoded."""
    table = pq.read_table(pa.BufferReader(seed_segment()))
    table = table.append_column("extra", pa.array([[i, None] for i in range(table.num_rows)]))
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def integer_leaves(value: Any) -> Iterator[Leaf]:
    """Every integer a Thrift struct holds, as (container, index), so it can be replaced."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        for entry in value:
            yield from integer_leaves(entry)
        return
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], int):
        kind = value[1]
        if kind in (I16, I32, I64):
            yield value, 2, False
        elif kind == STRUCT:
            yield from integer_leaves(value[2])
        elif kind == LIST:
            element, items = value[2]
            if element in (I16, I32, I64):
                yield from ((items, i, True) for i in range(len(items)))
            elif element == STRUCT:
                for item in items:
                    yield from integer_leaves(item)


def interesting(rng: random.Random, old: int, size: int) -> int:
    return rng.choice(
        [
            0,
            1,
            -1,
            old + 1,
            old - 1,
            old * 2,
            old // 2,
            2**31 - 1,
            -(2**31),
            2**63 - 1,
            rng.randrange(size),
            rng.randrange(-(2**15), 2**15),
        ]
    )


def mutate_footer(rng: random.Random, payload: bytes) -> bytes:
    body, metadata = split_footer(payload)
    leaves = list(integer_leaves(metadata))
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        container, index, in_list = rng.choice(leaves)
        if in_list and rng.random() < 0.3:  # a list of numbers: one more, or one less
            if rng.random() < 0.5:
                container.insert(index, rng.randrange(100))
            else:
                container.pop(index)
        else:
            container[index] = interesting(rng, container[index], len(payload))
    return join_footer(body, metadata)


def page_offsets(payload: bytes) -> list[int]:
    """Where the footer says each column chunk's pages begin (dictionary and data pages)."""
    _, metadata = split_footer(payload)
    offsets = []
    for group in field(metadata, 4)[2][1]:
        for chunk in field(group, 1)[2][1]:
            meta: Struct = field(chunk, 3)[2]
            offsets += [entry[2] for entry in meta if entry[0] in (9, 11)]
    return offsets


def mutate_page_header(rng: random.Random, payload: bytes) -> bytes:
    start = rng.choice(page_offsets(payload))
    header, end = page_header(payload, start)
    container, index, _ = rng.choice(list(integer_leaves(header)))
    container[index] = interesting(rng, container[index], len(payload))
    return payload[:start] + encode_struct(header) + payload[end:]


def flip_bytes(rng: random.Random, payload: bytes, footer_only: bool) -> bytes:
    data = bytearray(payload)
    footer = int.from_bytes(payload[-8:-4], "little")
    low = len(data) - 8 - footer if footer_only else 0
    for _ in range(rng.choice([1, 1, 2, 4, 8])):
        at = rng.randrange(low, len(data) - 8)
        data[at] = rng.randrange(256) if rng.random() < 0.5 else data[at] ^ 1 << rng.randrange(8)
    return bytes(data)


def mutate(rng: random.Random, payload: bytes) -> tuple[str, bytes]:
    kind = rng.choice(["footer", "footer", "footer", "page", "page", "flip", "flip_footer", "cut"])
    if kind == "footer":
        return kind, mutate_footer(rng, payload)
    if kind == "page":
        return kind, mutate_page_header(rng, payload)
    if kind == "cut":
        return kind, payload[: rng.randrange(len(payload))]
    return kind, flip_bytes(rng, payload, footer_only=kind == "flip_footer")


def _child(target: str, payload: bytes) -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # std::terminate's message, once per abort
    try:
        TARGETS[target](payload)
    except REFUSALS[target]:
        os._exit(1)
    except Exception:
        os._exit(2)
    os._exit(0)


def fate(target: str, payload: bytes) -> str:
    """What `target(payload)` does to a forked child: pass, raise(!), sig<N> or hang."""
    child = multiprocessing.get_context("fork").Process(target=_child, args=(target, payload))
    child.start()
    child.join(CHILD_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join()
        return "hang"
    code = child.exitcode or 0
    named = {0: "pass", 1: "raise", 2: "raise!"}
    return named.get(code, f"sig{-code}" if code < 0 else f"exit{code}")
