"""Segments built through the collectors' own encoder, for tests of the reading side."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from trainlight.collectors.schema import HEADER_KEY, RunHeader
from trainlight.collectors.writer import build_segment, encode_segment


def metrics_segment(
    run_id: str,
    seq: int,
    rows: Sequence[tuple[int, str, float]],
    *,
    name: str = "a run",
    status: str = "running",
    sent_at: float | None = None,
    **header: object,
) -> bytes:
    columns = {
        "table": ["metrics"] * len(rows),
        "step": [r[0] for r in rows],
        "key": [r[1] for r in rows],
        "value": [r[2] for r in rows],
    }
    run = RunHeader(
        run_id=run_id,
        seq=seq,
        name=name,
        status=status,
        sent_at=time.time() if sent_at is None else sent_at,
        started_at=time.time(),
        **header,
    )  # type: ignore[arg-type]
    return encode_segment([columns], run)


def rows_table(
    metrics: Sequence[tuple[int, str, float]] = (),
    layers: Sequence[tuple[int, str, str, float]] = (),
) -> pa.Table:
    """A segment table with metric rows (step, key, value) and layer rows (step, layer, key,
    value), as the collectors write them, for feeding health rules directly."""
    parts = [
        {
            "table": ["metrics"] * len(metrics),
            "step": [m[0] for m in metrics],
            "key": [m[1] for m in metrics],
            "value": [m[2] for m in metrics],
        },
        {
            "table": ["layer_metrics"] * len(layers),
            "step": [r[0] for r in layers],
            "layer": [r[1] for r in layers],
            "key": [r[2] for r in layers],
            "value": [r[3] for r in layers],
        },
    ]
    return build_segment(parts, RunHeader(run_id="r-1", seq=0, name="t"))


def with_raw_header(payload: bytes, raw: bytes) -> bytes:
    table = pq.read_table(io.BytesIO(payload))
    out = io.BytesIO()
    pq.write_table(table.replace_schema_metadata({HEADER_KEY: raw}), out)
    return out.getvalue()


def nested_header(run_id: str, depth: int) -> bytes:
    """A valid segment whose header config is `depth` lists deep (json.dumps would recurse)."""
    valid = metrics_segment(run_id, 0, [(0, "loss", 1.0)])
    header = json.loads(pq.read_schema(io.BytesIO(valid)).metadata[HEADER_KEY])
    header["config"] = {"deep": "DEEP"}
    raw = json.dumps(header).replace('"DEEP"', "[" * depth + "]" * depth)
    return with_raw_header(valid, raw.encode())
