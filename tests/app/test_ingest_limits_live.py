"""The attacks of issue 13 (defects 2 and 4) on a real `trainlight serve` on 127.0.0.1: bombs are
refused from the Parquet footer without the server's memory growing, and every segment the
ingester would refuse is refused before the 202, so nothing acknowledged is lost afterwards."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.segments import metrics_segment, nested_header
from tests.support.server import LiveServer, running_server
from trainlight.app.store.ingest.segment_limits import MAX_LIST_VALUES, MAX_ROWS
from trainlight.collectors.schema import RunHeader, segment_table

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server(tmp_path_factory.mktemp("limits") / "store") as live:
        yield live


def repeated_row_groups(table: pa.Table, groups: int) -> bytes:
    """`table` written `groups` times as row groups of one file: a bomb built in the memory of
    one group (all zeros, so zstd squeezes each group to a few KiB)."""
    out = io.BytesIO()
    with pq.ParquetWriter(out, table.schema, compression="zstd") as writer:
        for _ in range(groups):
            writer.write_table(table)
    return out.getvalue()


def list_bomb(run_id: str) -> bytes:
    """One list per row group of 4M float32 zeros; twice the cap in all (128 MiB decoded)."""
    per_group = 4 * MIB
    values = pa.ListArray.from_arrays(
        pa.array([0, per_group], pa.int32()), pa.array(np.zeros(per_group, np.float32))
    )
    columns = {"table": ["arrays"], "step": [0], "key": ["predictions"], "values": values}
    table = segment_table(columns, RunHeader(run_id=run_id, seq=0, name="bomb"))
    return repeated_row_groups(table, 2 * MAX_LIST_VALUES // per_group)


def row_bomb(run_id: str) -> bytes:
    """10M metric rows of zeros in 10 row groups."""
    n = MAX_ROWS
    columns = {
        "table": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), ["metrics"]),
        "step": pa.array(np.zeros(n, np.int64)),
        "key": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), ["loss"]),
        "value": pa.array(np.zeros(n, np.float64)),
    }
    table = segment_table(columns, RunHeader(run_id=run_id, seq=0, name="bomb"))
    return repeated_row_groups(table, 10)


def peak_rss_mib(server: LiveServer) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def post(server: LiveServer, run_id: str, body: bytes, seq: int = 0) -> Any:
    return server.http.post(
        server.url("api/v1/ingest"),
        params={"run_id": run_id, "seq": str(seq)},
        data=body,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )


def test_bombs_are_refused_from_the_footer_without_memory_growth(server: LiveServer) -> None:
    bombs = {"lists hold": list_bomb("bomb-lists"), "rows, more than": row_bomb("bomb-rows")}
    assert all(len(b) < 1 * MIB for b in bombs.values()), [len(b) for b in bombs.values()]
    before = peak_rss_mib(server)
    for expected, body in bombs.items():
        for _ in range(3):
            reply = post(server, "bomb-lists" if "lists" in expected else "bomb-rows", body)
            assert reply.status_code == 422, reply.text
            assert expected in reply.json()["error"]
    growth = peak_rss_mib(server) - before
    assert growth < 100, f"server peak RSS grew by {growth:.0f} MiB"


@pytest.mark.parametrize(
    ("what", "build", "expected"),
    [
        ("null key", lambda r: metrics_segment(r, 0, [(0, None, 1.0)]), "no key"),  # type: ignore[list-item]
        ("step 2**63-1", lambda r: metrics_segment(r, 0, [(2**63 - 1, "loss", 1.0)]), "step"),
        ("header nested 900 deep", lambda r: nested_header(r, 900), "nested 90"),
        (
            "lca_window as text",
            lambda r: metrics_segment(r, 0, [(0, "loss", 1.0)], health={"lca_window": "10"}),
            "lca_window",
        ),
    ],
)
def test_what_the_ingester_would_refuse_is_refused_before_the_202(
    server: LiveServer, what: str, build: Any, expected: str
) -> None:
    run_id = "bad-" + what.replace(" ", "-").replace("*", "")[:30].strip("-").lower()
    reply = post(server, run_id, build(run_id))
    assert reply.status_code == 422, (what, reply.text)
    assert expected in reply.json()["error"], reply.text
    # The same run then sends a valid segment: acknowledged, and ingested (nothing lost).
    assert post(server, run_id, metrics_segment(run_id, 0, [(3, "loss", 0.5)])).status_code == 202
    detail = server.wait_for(lambda: server.run(run_id), 30, f"{run_id} ingested")
    assert detail["last_values"]["loss"] == 0.5
    health = server.http.get(server.url("api/v1/health"), timeout=10).json()
    assert health["rejected_segments"] == 0, health
