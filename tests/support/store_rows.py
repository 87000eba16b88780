"""Read back what a run wrote into a store's inbox (no server): its logged rows and headers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from trainlight.app.store.ingest.transaction import decode_segment
from trainlight.collectors.run_header import RunHeader
from trainlight.collectors.store_files import run_entries, segment_files


def run_ids(store: Path) -> list[str]:
    """The runs with segments in the store's inbox."""
    return sorted({run_id for run_id, _, _ in segment_files(run_entries(store / "inbox"))})


def logged(
    store: Path, key: str, run_id: str | None = None, table: str = "metrics"
) -> list[tuple[int, float, datetime]]:
    """(step, value, wall time) of one key's rows in `table` (`layer_metrics`: every layer's),
    in step order (one run per store unless `run_id` names it)."""
    out = []
    for rid, _, path in segment_files(run_entries(store / "inbox")):
        if run_id is not None and rid != run_id:
            continue
        data = decode_segment(path.read_bytes()).table.to_pydict()
        columns = (data["table"], data["step"], data["key"], data["value"], data["wall_time"])
        out += [
            (s, v, w) for t, s, k, v, w in zip(*columns, strict=True) if t == table and k == key
        ]
    return sorted(out, key=lambda row: row[0])


def last_header(store: Path, run_id: str | None = None) -> RunHeader:
    """The header of the run's latest segment: its final status, stop reason, config."""
    files = [
        path
        for rid, _, path in segment_files(run_entries(store / "inbox"))
        if run_id is None or rid == run_id
    ]
    return decode_segment(files[-1].read_bytes()).header
