"""Ingest throughput from the inbox into DuckDB, in rows/s and segments/s, small and large.

Why: `trainlight serve` is the single writer of the store, so its ingester must keep up with every
training process at once; the goals are >= 1,000,000 rows/s for large segments on a 2-core
machine, and >= 200 segments/s for tiny segments from many runs (200 HTTP runs flushing once a
second, the issue-7 load).
Segments are made by the real writer path (`encode_segment`: the segment schema, zstd Parquet,
the run header in the metadata) and dropped into a fresh store's inbox with `write_atomically`,
as a Monitor's flush thread does, with increasing `seq`, for one run or many. Only
`Ingester.ingest_pending()` is timed, end to end: file listing and read, Parquet decode and
validation, one transaction per batch (rows, `latest`, sparklines, `runs`, health rules,
`segments`), file delete, liveness sweep. The time inside `decode_segment` and `ingest_batch`
is split out by wrapping them; "other" is the rest.

Baseline measured in the same run: decode plus a plain Arrow `INSERT INTO metrics SELECT ...` of
the same segments into an empty database, without the exactly-once and `latest` bookkeeping.

    python bench/ingest_throughput.py            # ~1-2 min
    python bench/ingest_throughput.py --quick    # ~20 s
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pyarrow as pa

import trainlight.app.store.ingest.inbox as inbox_module
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.ingest.transaction import decode_segment
from trainlight.collectors.schema import RunHeader, StoreLayout, make_run_id, write_atomically
from trainlight.collectors.writer import encode_segment

GOAL_ROWS_PER_S = 1_000_000
GOAL_SEGMENTS_PER_S = 200
KEYS = ("d_loss", "gp", "content", "total", "lr", "grad_norm", "runaway/distance", "lca/total")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Scenario:
    rows_per_segment: int
    segments: int  # per run
    runs: int = 1


@dataclass(frozen=True)
class Timing:
    rows: int
    segments: int
    total_s: float
    decode_s: float
    transaction_s: float
    baseline_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.total_s


def metric_columns(n_rows: int, first_step: int) -> dict[str, pa.Array]:
    """Columns shaped like `ScalarColumns.arrow()`: 8 keys logged every step."""
    index = np.arange(n_rows)
    steps = first_step + index // len(KEYS)
    wall_us = 1_700_000_000_000_000 + steps * 1_000
    keys = pa.DictionaryArray.from_arrays(
        pa.array(index % len(KEYS), pa.int32()), pa.array(KEYS, pa.string())
    )
    return {
        "table": pa.array(["metrics"] * n_rows, pa.string()).dictionary_encode(),
        "step": pa.array(steps, pa.int64()),
        "key": keys,
        "value": pa.array(np.random.default_rng(first_step).standard_normal(n_rows)),
        "wall_time": pa.array(wall_us, pa.timestamp("us")),
    }


def fill_inbox(layout: StoreLayout, scenario: Scenario) -> list[bytes]:
    """Write the scenario's segments of every run into the inbox; return their bytes."""
    payloads = []
    for run in range(scenario.runs):
        payloads += fill_run(layout, scenario, f"bench-{scenario.rows_per_segment}-{run}")
    return payloads


def fill_run(layout: StoreLayout, scenario: Scenario, name: str) -> list[bytes]:
    """Write one run's segments into the inbox; return their bytes."""
    header = RunHeader(
        run_id=make_run_id(name),
        seq=0,
        name="ingest bench",
        project="bench",
        config={"lr": 3e-4, "batch": 64},
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=time.time(),
    ).validated()
    layout.run_inbox(header.run_id).mkdir(parents=True, exist_ok=True)
    payloads = []
    steps_per_segment = -(-scenario.rows_per_segment // len(KEYS))
    for seq in range(scenario.segments):
        this = RunHeader(**{**header.__dict__, "seq": seq, "sent_at": time.time()})
        columns = metric_columns(scenario.rows_per_segment, seq * steps_per_segment)
        payload = encode_segment([columns], this)
        write_atomically(layout.segment_path(header.run_id, seq), payload)
        payloads.append(payload)
    return payloads


@contextmanager
def timed(name: str, into: dict[str, float]) -> Iterator[None]:
    """Wrap `inbox_module.<name>` so the seconds spent in it accumulate in `into[name]`."""
    original: Callable[..., Any] = getattr(inbox_module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into[name] += time.perf_counter() - start

    setattr(inbox_module, name, wrapper)
    try:
        yield
    finally:
        setattr(inbox_module, name, original)


def baseline_seconds(root: Path, payloads: list[bytes]) -> float:
    """Decode + plain Arrow INSERT of the same segments, no bookkeeping: the ceiling."""
    con = duckdb.connect(str(root / "baseline.duckdb"))
    con.execute(
        "CREATE TABLE metrics(run_id VARCHAR, step BIGINT, key VARCHAR, value DOUBLE, "
        "wall_time TIMESTAMP)"
    )
    start = time.perf_counter()
    for payload in payloads:
        con.register("segment", decode_segment(payload).table)
        con.execute(
            "INSERT INTO metrics SELECT 'run', step, CAST(key AS VARCHAR), value, wall_time "
            "FROM segment"
        )
        con.unregister("segment")
    seconds = time.perf_counter() - start
    con.close()
    return seconds


def run_scenario(scenario: Scenario) -> Timing:
    with tempfile.TemporaryDirectory(prefix="trainlight-ingest-bench-") as tmp:
        layout = StoreLayout(Path(tmp) / "store")
        store = Store(layout)
        payloads = fill_inbox(layout, scenario)
        spent = {"decode_segment": 0.0, "ingest_batch": 0.0}
        ingester = Ingester(store)
        with timed("decode_segment", spent), timed("ingest_batch", spent):
            start = time.perf_counter()
            stats = ingester.ingest_pending()
            total = time.perf_counter() - start
        with store.read() as cur:
            row = cur.execute("SELECT count(*) FROM metrics").fetchone()
        store.close()
        expected = scenario.rows_per_segment * scenario.segments * scenario.runs
        if stats.rows != expected or row is None or row[0] != expected or stats.rejected:
            raise SystemExit(f"ingest incomplete: {stats} and {row} rows, expected {expected}")
        return Timing(
            rows=expected,
            segments=stats.segments,
            total_s=total,
            decode_s=spent["decode_segment"],
            transaction_s=spent["ingest_batch"],
            baseline_s=baseline_seconds(Path(tmp), payloads),
        )


def report(scenario: Scenario, t: Timing) -> None:
    other = t.total_s - t.decode_s - t.transaction_s
    per_segment_ms = t.total_s / t.segments * 1000
    segments_per_s = t.segments / t.total_s
    goal = (
        f"{segments_per_s:,.0f} segments/s = {segments_per_s / GOAL_SEGMENTS_PER_S:.2f}x goal"
        if scenario.runs > 1
        else f"{t.rows_per_s / GOAL_ROWS_PER_S:5.2f}x goal"
    )
    print(
        f"{scenario.rows_per_segment:>7}-row segments x {t.segments:<4} "
        f"({scenario.runs} run{'s' if scenario.runs > 1 else ''}) "
        f"{t.rows:>9} rows in {t.total_s:6.2f} s = {t.rows_per_s:>11,.0f} rows/s "
        f"({goal}; {per_segment_ms:.2f} ms/segment)"
    )
    print(
        f"{'':9}split: decode {t.decode_s / t.total_s:4.0%}, transaction "
        f"{t.transaction_s / t.total_s:4.0%}, other (list/read/unlink/sweep) "
        f"{other / t.total_s:4.0%}; baseline decode+plain INSERT "
        f"{t.rows / t.baseline_s:>11,.0f} rows/s (ingest = {t.baseline_s / t.total_s:4.0%} of it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer segments (~15 s)")
    args = parser.parse_args()
    scenarios = (
        [Scenario(1_000, 100), Scenario(100_000, 5), Scenario(20, 3, runs=200)]
        if args.quick
        else [Scenario(1_000, 500), Scenario(100_000, 30), Scenario(20, 10, runs=200)]
    )
    print(
        f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}, {os.cpu_count()} CPUs, "
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; goal "
        f"{GOAL_ROWS_PER_S:,} rows/s for large segments"
    )
    for scenario in scenarios:
        report(scenario, run_scenario(scenario))


if __name__ == "__main__":
    main()
