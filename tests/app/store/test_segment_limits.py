"""The cheap pre-202 checks against naive references: the flat JSON depth scan against the depth
of what json.loads builds, and the caps against segments just over and just under them."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.segments import metrics_segment, nested_header
from trainlight.app.store.ingest.segment_limits import (
    MAX_ABS_STEP,
    MAX_HEADER_DEPTH,
    LimitError,
    check_segment,
    json_depth,
)
from trainlight.app.store.ingest.transaction import SegmentError, decode_segment
from trainlight.collectors.schema import RunHeader, segment_table

JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False),
        st.text(alphabet='ab[]{}"\\\n:,é'),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(alphabet="[]{}\"'\\x"), inner)
    ),
    max_leaves=30,
)


def naive_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((naive_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((naive_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=JSON, indent=st.sampled_from([None, 1]))
def test_json_depth_matches_the_depth_of_the_parsed_value(value: Any, indent: int | None) -> None:
    assert json_depth(json.dumps(value, indent=indent).encode()) == naive_depth(value)


def test_json_depth_scans_100k_levels_without_recursion() -> None:
    assert json_depth(b"[" * 100_000 + b"]" * 100_000) == 100_000


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([(MAX_ABS_STEP, "loss", 1.0)], {}, "step"),
        ([(-MAX_ABS_STEP, "loss", 1.0)], {}, "step"),
        ([(0, None, 1.0)], {}, "have no key"),
        ([(0, "loss", 1.0)], {"health": {"lca_window": "10"}}, "lca_window"),
        ([(0, "loss", 1.0)], {"config": {"x": "y" * 1_100_000}}, "run header has"),
    ],
)
def test_what_the_store_cannot_take_is_refused_by_both_checks(
    rows: list[tuple[int, str | None, float]], header: dict[str, Any], message: str
) -> None:
    payload = metrics_segment("r-1", 0, rows, **header)  # type: ignore[arg-type]
    with pytest.raises(LimitError, match=message):
        check_segment(payload)
    with pytest.raises(SegmentError, match=message):
        decode_segment(payload)


def test_limits_leave_valid_segments_alone() -> None:
    payload = metrics_segment("r-1", 3, [(MAX_ABS_STEP - 1, "loss", 1.0), (0, "acc", 0.5)])
    assert check_segment(payload) == decode_segment(payload).header
    deep = nested_header("r-1", MAX_HEADER_DEPTH - 2)  # + the header and its config object
    assert naive_depth(check_segment(deep).config) == MAX_HEADER_DEPTH - 1
    with pytest.raises(LimitError, match="nested"):
        check_segment(nested_header("r-1", MAX_HEADER_DEPTH - 1))


def test_an_extra_column_bomb_is_never_decoded() -> None:
    """9 row groups of a 4M-float list in a column outside the schema (144 MiB decoded, a few
    KiB on disk, and a tiny "uncompressed" size, as run-length encoding keeps the pages small):
    accepted, and the ingester never reads the column."""
    per_group = 4 * 1024 * 1024
    junk = pa.ListArray.from_arrays(
        pa.array([0, per_group], pa.int32()), pa.array(np.zeros(per_group, np.float32))
    )
    segment = pq.read_table(io.BytesIO(metrics_segment("r-1", 0, [(0, "loss", 1.0)])))
    table = segment.append_column("junk", junk)
    out = io.BytesIO()
    with pq.ParquetWriter(out, table.schema, compression="zstd") as writer:
        for _ in range(9):
            writer.write_table(table)
    assert len(out.getvalue()) < 256 * 1024
    pool = pa.default_memory_pool()
    before = pool.bytes_allocated()
    decoded = decode_segment(out.getvalue())
    assert "junk" not in decoded.table.column_names and decoded.table.num_rows == 9
    assert pool.bytes_allocated() - before < 16 * 1024 * 1024


def test_a_string_bomb_is_read_as_a_dictionary() -> None:
    """1M rows whose key is one 1 KiB string, written without the Arrow schema so that a plain
    read would build 1 GiB of strings: read as a dictionary, it takes a few MiB."""
    n = 1_000_000
    table = segment_table(
        {
            "table": ["metrics"] * n,
            "step": pa.array(np.arange(n, dtype=np.int64)),
            "key": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), ["k" * 1024]),
            "value": pa.array(np.zeros(n)),
        },
        RunHeader(run_id="r-1", seq=0, name="strings"),
    )
    out = io.BytesIO()
    with pq.ParquetWriter(out, table.schema, compression="zstd", store_schema=False) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata(table.schema.metadata)
    assert pq.read_schema(io.BytesIO(out.getvalue())).field("key").type == pa.string()
    pool = pa.default_memory_pool()
    before = pool.max_memory()  # the peak so far: building this table took ~30 MiB
    decoded = decode_segment(out.getvalue())
    assert decoded.table.num_rows == n
    assert pool.max_memory() - before < 64 * 1024 * 1024
