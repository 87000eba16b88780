from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from trainlight.app.store.migrations import SCHEMA_VERSION, SchemaError, migrate
from trainlight.collectors.schema import (
    RunHeader,
    StoreLayout,
    is_valid_run_id,
    list_segment_files,
    make_run_id,
    normalise_segment,
    parse_segment_file_name,
    read_header,
    segment_file_name,
    segment_table,
    write_atomically,
)

HOSTILE_NAMES = [
    "with \"quotes\" and 'single'",
    "../../etc/passwd",
    "'; DROP TABLE runs; --",
    "rocket 🚀 émigré",
    "",
    "/",
    "a" * 500,
    "CON",
    "tab\tnew\nline",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_run_ids_are_path_and_url_safe_for_any_name(name: str) -> None:
    run_id = make_run_id(name)
    assert is_valid_run_id(run_id)
    assert "/" not in run_id and ".." not in run_id and len(run_id) <= 80


def test_run_ids_differ_when_names_repeat() -> None:
    assert len({make_run_id("same") for _ in range(100)}) == 100


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "A-upper", "-lead", "x" * 81, "semi;colon"])
def test_invalid_run_ids_are_refused(bad: str) -> None:
    assert not is_valid_run_id(bad)
    with pytest.raises(ValueError, match="invalid run id"):
        StoreLayout.resolve("/tmp").segment_path(bad, 0)


def test_header_round_trips_through_segment_metadata() -> None:
    header = RunHeader(
        run_id="r-1",
        seq=7,
        name="'; DROP TABLE runs; --",
        project="p",
        tags=("a", "b"),
        config={"lr": 0.1, "nested": {"x": [1, 2]}},
    )
    table = segment_table(
        {"table": ["metrics"], "step": [3], "key": ["loss"], "value": [1.5]}, header
    )
    assert normalise_segment(table).equals(table)
    assert read_header(table) == header


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("seq", -1, "seq"),
        ("status", "exploded", "status"),
        ("run_id", "../x", "run id"),
        ("tags", [1], "tags"),
        ("seq", 2**63 - 1, "seq"),
        ("seq", True, "seq"),
        ("total_steps", 2**63, "total_steps"),
        ("health", {"lca_window": "10"}, "lca_window must be of type int"),
        ("health", {"dead_amber": True}, "dead_amber must be of type float"),
        ("health", {"lca_window": 0}, "lca_window must be an integer >= 1"),
    ],
)
def test_bad_headers_are_refused_with_the_field_named(
    field: str, value: object, message: str
) -> None:
    raw = RunHeader(run_id="r-1", seq=0, name="n").to_bytes().decode()
    import json

    data = json.loads(raw)
    data[field] = value
    with pytest.raises(ValueError, match=message):
        RunHeader.from_bytes(json.dumps(data).encode())


def test_segment_without_header_is_refused() -> None:
    with pytest.raises(ValueError, match="no run header"):
        read_header(pa.table({"step": [1]}))


def test_migrate_creates_every_design_table_and_is_idempotent() -> None:
    con = duckdb.connect()
    assert migrate(con) == SCHEMA_VERSION
    assert migrate(con) == SCHEMA_VERSION
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    assert {
        "runs",
        "metrics",
        "layer_metrics",
        "lca_frames",
        "health",
        "latest",
        "segments",
        "schema_version",
    } <= tables
    versions = con.execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_newer_store_is_refused_not_damaged() -> None:
    con = duckdb.connect()
    migrate(con)
    con.execute("INSERT INTO schema_version VALUES (?)", [SCHEMA_VERSION + 1])
    with pytest.raises(SchemaError, match="newer"):
        migrate(con)


def test_segment_files_listed_in_sequence_order_ignoring_temporaries(tmp_path) -> None:
    run = tmp_path / "run-1"
    run.mkdir()
    for seq in (10, 2, 1):
        (run / segment_file_name(seq)).write_bytes(b"x")
    (run / ".000000000003.parquet.123.tmp").write_bytes(b"partial")
    (tmp_path / "not a run id").mkdir()
    assert [seq for _, seq, _ in list_segment_files(tmp_path)] == [1, 2, 10]
    assert parse_segment_file_name(".000000000003.parquet.123.tmp") is None
    assert "²".isdigit() and parse_segment_file_name("²².parquet") is None  # int() refuses it
    assert parse_segment_file_name("٣.parquet") is None  # Arabic-Indic digit: not ASCII


def test_store_files_are_readable_by_a_server_running_as_another_user(tmp_path) -> None:
    path = tmp_path / segment_file_name(0)
    write_atomically(path, b"x")
    assert path.stat().st_mode & 0o777 == 0o644  # mkstemp alone leaves 0600


def test_segments_from_other_writers_are_normalised_or_refused() -> None:
    header = RunHeader(run_id="r-1", seq=0, name="n")
    ours = segment_table(
        {"table": ["metrics"], "step": [3], "key": ["loss"], "value": [1.5]}, header
    )
    plain = pa.table(
        {
            f.name: ours[f.name].cast(pa.large_string())
            if pa.types.is_dictionary(f.type)
            else ours[f.name]
            for f in ours.schema
        }
        | {"extra": [1]}
    )
    assert normalise_segment(plain.replace_schema_metadata(ours.schema.metadata)).equals(ours)
    null_step = ours.set_column(1, "step", pa.array([None], pa.int64()))
    with pytest.raises(ValueError, match="'step' has null values"):
        normalise_segment(null_step)
    foreign = ours.set_column(0, "table", pa.array(["runs"]).dictionary_encode())
    with pytest.raises(ValueError, match="unknown tables \\['runs'\\]"):
        normalise_segment(foreign)
