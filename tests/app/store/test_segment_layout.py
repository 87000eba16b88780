"""The footer check (store/ingest/segment_layout.py) on the writer's own segments and on footers the
fuzzer found: what aborted pyarrow is refused before pyarrow sees the file, and every lie about
the pages' contents is refused by the receive check and by the ingester's decode."""

from __future__ import annotations

import io
import random
import subprocess
import sys
from collections.abc import Callable

import pyarrow.parquet as pq
import pytest

from tests.support.crafted_segments import ABORTING, LYING, valid
from tests.support.parquet_thrift import Struct, column_meta, field, join_footer, split_footer
from tests.support.segment_fuzz import (
    TARGETS,
    extra_column_segment,
    fate,
    list_segment,
    mutate,
    seed_segment,
)
from tests.support.segments import metrics_segment
from trainlight.app.store.ingest.segment_layout import LayoutError, check_layout
from trainlight.app.store.ingest.segment_limits import LimitError, check_segment
from trainlight.app.store.ingest.transaction import SegmentError, decode_segment

# An unguarded read, as the server did before the footer check.
UNGUARDED_READ = """import io, sys, pyarrow.parquet as pq
parquet = pq.ParquetFile(io.BytesIO(sys.stdin.buffer.read()))
group = parquet.metadata.row_group(0)
[group.column(i).compression for i in range(group.num_columns)]
parquet.read()
"""


def rewrite(payload: bytes, edit: Callable[[Struct], None]) -> bytes:
    body, metadata = split_footer(payload)
    edit(metadata)
    return join_footer(body, metadata)


@pytest.mark.parametrize(
    "payload",
    [valid("r-1"), metrics_segment("r-1", 0, []), list_segment(), extra_column_segment()],
    ids=["20 metric rows", "empty heartbeat", "lists", "extra column"],
)
def test_the_writers_segments_pass(payload: bytes) -> None:
    check_layout(payload)
    assert check_segment(payload) == decode_segment(payload).header


def test_a_segment_written_with_pyarrows_defaults_passes() -> None:
    """Snappy, pyarrow's default codec: what another pyarrow-based writer may send."""
    table = pq.read_table(io.BytesIO(valid("r-1")))
    out = io.BytesIO()
    pq.write_table(table, out)
    check_layout(out.getvalue())
    assert decode_segment(out.getvalue()).table.num_rows == table.num_rows


@pytest.mark.parametrize("name", list(ABORTING))
def test_footers_that_abort_pyarrow_are_refused_before_it_reads_them(name: str) -> None:
    crafted = ABORTING[name](valid("r-1"))
    unguarded = subprocess.run(
        [sys.executable, "-c", UNGUARDED_READ], input=crafted, capture_output=True, timeout=60
    )
    if unguarded.returncode != -6:
        pytest.skip(f"this pyarrow no longer aborts on {name} ({unguarded.returncode})")
    assert b"parquet::ParquetException" in unguarded.stderr
    with pytest.raises(LayoutError):
        check_layout(crafted)
    with pytest.raises(LimitError, match="footer does not describe a trainlight segment"):
        check_segment(crafted)
    with pytest.raises(SegmentError, match="footer does not describe a trainlight segment"):
        decode_segment(crafted)


@pytest.mark.parametrize("name", list(LYING))
def test_footers_that_lie_about_value_counts_are_refused(name: str) -> None:
    crafted = LYING[name](valid("r-1"))
    with pytest.raises(LimitError, match="declares"):
        check_segment(crafted)
    with pytest.raises(SegmentError, match="declares"):
        decode_segment(crafted)


def _set_column(column: int, field_id: int, value: object) -> Callable[[Struct], None]:
    def edit(metadata: Struct) -> None:
        field(column_meta(metadata, 0, column), field_id)[2] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set_column(2, 9, 10**6), "outside"),  # `key`'s data pages past the end of the file
        (_set_column(2, 11, 1), "outside"),  # its dictionary page on the magic
        (_set_column(1, 11, 4), "overlap"),  # `step` starts where `table` does
        (_set_column(4, 7, 10**6), "outside"),  # `value` runs past the footer
        (_set_column(0, 2, [5, [0, 3, 9]]), "encodings"),  # 9: BYTE_STREAM_SPLIT
        (_set_column(0, 1, 1), "does not match its schema leaf"),  # chunk says INT32
        (lambda m: field(m, 3).__setitem__(2, 7), "row groups hold 20 rows"),
        (lambda m: m.append([8, 12, []]), "encrypted"),
    ],
)
def test_footer_declarations_outside_the_writers_are_refused(
    edit: Callable[[Struct], None],
    expected: str,
) -> None:
    with pytest.raises(LayoutError, match=expected):
        check_layout(rewrite(valid("r-1"), edit))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p[:-4] + b"PAR0",
        lambda p: p[:-8] + (10**6).to_bytes(4, "little") + b"PAR1",
        lambda p: p[:-8] + (3).to_bytes(4, "little") + b"PAR1",
        lambda p: p[:4] + b"\xff" * (len(p) - 12) + p[-8:],
    ],
    ids=["magic", "footer larger than file", "footer cut short", "footer of 0xff"],
)
def test_unreadable_footers_are_layout_errors(damage: Callable[[bytes], bytes]) -> None:
    with pytest.raises(LayoutError):
        check_layout(damage(valid("r-1")))


def test_a_deeply_nested_footer_is_refused_without_recursion() -> None:
    nested = b"\x1c" * 100_000  # field 1, type struct, 100,000 deep
    footer = nested + b"\x00" * 100_001
    payload = b"PAR1" + footer + len(footer).to_bytes(4, "little") + b"PAR1"
    with pytest.raises(LayoutError, match="nested"):
        check_layout(payload)


def test_large_segments_keep_their_layout() -> None:
    """Many row groups: every group's chunks checked, the row counts added up."""
    table = pq.read_table(io.BytesIO(valid("r-1")))
    out = io.BytesIO()
    with pq.ParquetWriter(out, table.schema, compression="zstd") as writer:
        for _ in range(5):
            writer.write_table(table)
    check_layout(out.getvalue())
    assert decode_segment(out.getvalue()).table.num_rows == 5 * table.num_rows


def test_a_bounded_fuzz_run_never_kills_or_hangs_the_readers() -> None:
    """60 damaged segments (fixed seed), each read by both targets in a forked child: every one
    is accepted or refused with the target's own exception, none kills its process."""
    rng = random.Random(13)
    seeds = [seed_segment(), list_segment(), extra_column_segment()]
    fates = {}
    for i in range(60):
        kind, payload = mutate(rng, seeds[i % len(seeds)])
        for target in TARGETS:
            fates[i, kind, target] = fate(target, payload)
    bad = {key: outcome for key, outcome in fates.items() if outcome not in ("pass", "raise")}
    assert not bad, bad
