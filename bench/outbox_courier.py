"""Deliver what exited HTTP collectors left in their outboxes, as the next collector process would.

A collector keeps a segment in its outbox until the server acknowledges it; when the process ends
(or is killed) first, the segments stay there and "the next trainlight process using that outbox
delivers them" (collectors/http_sink.py). A bench has no next training process, so it plays that
part with the collector's own `HttpSink`, whose `retry()` delivers folders no live process owns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from trainlight.collectors.http_sink import HttpSink
from trainlight.collectors.problems import Problems
from trainlight.collectors.schema import list_segment_files


def outbox_files(outboxes: Sequence[Path]) -> int:
    return sum(len(list_segment_files(outbox)) for outbox in outboxes)


def deliver_leftovers(outboxes: Sequence[Path], base_url: str, timeout_s: float = 120.0) -> int:
    """Deliver every segment left in `outboxes` (bounded in time); returns how many there were."""
    left = outbox_files(outboxes)
    deadline = time.monotonic() + timeout_s
    for outbox in outboxes:
        if not list_segment_files(outbox):
            continue
        sink = HttpSink(base_url, Problems(), outbox=outbox)
        sink.finish_by(deadline)  # no request outlives the courier's time either
        while list_segment_files(outbox) and time.monotonic() < deadline:
            sink.retry()
            time.sleep(0.2)
    return left
