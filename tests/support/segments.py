"""Segments built through the collectors' own encoder, for tests of the reading side."""

from __future__ import annotations

import time
from collections.abc import Sequence

from trainlight.collectors.schema import RunHeader
from trainlight.collectors.writer import encode_segment


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
