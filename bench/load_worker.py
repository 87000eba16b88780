"""One load-test worker process: `--count` real Monitors posting to a live server over HTTP.

Each Monitor is what a training script creates (`Monitor(store="http://127.0.0.1:<port>")`), so
the server receives exactly the segments, control polls and retries of the real collector. The
worker logs step s of every run at tick s (`--hz` ticks per second, on a timer that does not
drift), records when each tick really happened (the ingest-lag reference), closes the Monitors,
and writes a JSON result: steps per run, tick times, and the collectors' problem counts.

Protocol with bench/load_test.py: prints `ready` once its Monitors exist, reads the common start
time (unix seconds) from stdin, prints `logged` after its last tick, then `closed`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from trainlight.collectors import Monitor

CLOSE_TIMEOUT_S = 30.0


def run_name(index: int) -> str:
    return f"load-{index:04d}"


def make_monitors(url: str, first: int, count: int, post_every: float) -> list[Monitor]:
    return [
        Monitor(
            run=run_name(i),
            project="load",
            store=url,
            group=f"g{i % 10}",
            flush_interval=post_every,
            heartbeat_interval=max(10.0, post_every),
        )
        for i in range(first, first + count)
    ]


def log_on_timer(monitors: list[Monitor], hz: float, ticks: int, start_at: float) -> list[float]:
    """Log step s of every run at start_at + s/hz; returns when each tick began (unix s)."""
    tick_times: list[float] = []
    for step in range(ticks):
        delay = start_at + step / hz - time.time()
        if delay > 0:
            time.sleep(delay)
        tick_times.append(time.time())
        for mon in monitors:
            mon.log(step, loss=1.0 / (step + 1), step_copy=float(step))
    return tick_times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--hz", type=float, required=True)
    parser.add_argument("--ticks", type=int, required=True)
    parser.add_argument("--post-every", type=float, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    monitors = make_monitors(args.url, args.first, args.count, args.post_every)
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    tick_times = log_on_timer(monitors, args.hz, args.ticks, start_at)
    print("logged", flush=True)
    closing = time.time()
    with ThreadPoolExecutor(max_workers=max(len(monitors), 1)) as pool:  # network waits
        list(pool.map(lambda m: m.close(timeout=CLOSE_TIMEOUT_S), monitors))
    problems: Counter[str] = Counter()
    for mon in monitors:
        problems.update(mon.problems.snapshot())
    result = {
        "runs": {mon.run_id: args.ticks for mon in monitors},
        "tick_times": tick_times,
        "start_at": start_at,
        "close_s": time.time() - closing,
        "dropped_records": sum(mon.dropped_records for mon in monitors),
        "problems": dict(problems),
    }
    args.result.write_text(json.dumps(result))
    print("closed", flush=True)


if __name__ == "__main__":
    main()
