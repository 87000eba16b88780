"""What the footer check (store/ingest/segment_layout.py) costs per small segment, with and without
it in the same run: the receive-path check (`check_segment`, before the 202) and the ingester's
`decode_segment`, the latter both for a footer seen first (a local collector's inbox file) and
for one the receive path passed already (remembered: a lookup).

Why: the ingester must take >= 300 small segments/s on a 2-core machine, and every segment,
received over HTTP or written to the inbox by a local collector, now has its footer read in
Python before pyarrow sees it. "Without" replaces `check_layout` by a no-op, which is what the
server ran before the check (plus the rows-decoded-equal-rows-declared comparison, a few ns).
Rounds alternate with and without, so a machine shared with other work slows both alike; the
median of the rounds is reported.

    python bench/segment_check_cost.py            # ~10 s
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/segment_check_cost.py`: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trainlight.app.store.ingest.segment_limits as segment_limits
from tests.support.segment_fuzz import seed_segment
from trainlight.app.store.ingest.segment_layout import check_layout, forget_passed
from trainlight.app.store.ingest.segment_limits import check_segment
from trainlight.app.store.ingest.transaction import decode_segment

ROWS = 20


def per_call_us(
    function: Callable[[bytes], Any], payload: bytes, calls: int, first_sight: bool = True
) -> float:
    """Mean microseconds per call; with `first_sight`, no footer is remembered as passed."""
    spent = 0.0
    for _ in range(calls):
        if first_sight:
            forget_passed()
        start = time.perf_counter()
        function(payload)
        spent += time.perf_counter() - start
    return spent / calls * 1e6


def without_layout_check(function: Callable[[bytes], Any], payload: bytes, calls: int) -> float:
    segment_limits.check_layout = lambda payload: None
    try:
        return per_call_us(function, payload, calls)
    finally:
        segment_limits.check_layout = check_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    payload = seed_segment(ROWS)
    print(
        f"{ROWS}-row segment of {len(payload)} bytes; {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    layout = statistics.median(per_call_us(check_layout, payload, args.calls) for _ in range(3))
    print(f"  check_layout alone, footer seen first {layout:6.0f} us")
    cases = [
        ("check_segment", check_segment, True),
        ("decode_segment, footer seen first", decode_segment, True),
        ("decode_segment, footer passed before", decode_segment, False),
    ]
    for name, function, first_sight in cases:
        before, after = [], []
        for _ in range(args.rounds):
            before.append(without_layout_check(function, payload, args.calls))
            after.append(per_call_us(function, payload, args.calls, first_sight))
        b, a = statistics.median(before), statistics.median(after)
        print(
            f"  {name:37} without {b:6.0f} us, with {a:6.0f} us: x{a / b:.2f} "
            f"(+{a - b:.0f} us per segment)"
        )


if __name__ == "__main__":
    main()
