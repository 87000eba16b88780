"""Load: many runs posting over HTTP while browsers reload the grid; lag, latency, errors, loss.

Why (issue 7, Load): 200 simulated runs posting at 10 Hz for 60 s while 10 clients reload the
grid every second. Goal: ingest lag p95 < 2 s, zero errors, zero loss.

What runs: the real CLI server (tests/support/server.py) and `--workers` processes
(load_worker.py) holding `--runs` real `Monitor(store="http://127.0.0.1:<port>")` in all, each
logging 2 keys at `--hz` steps per second on a timer for `--duration` s. A Monitor POSTs a segment
every `--post-every` s (its flush interval; 1.0 is the collector's default, 0.1 posts at 10 Hz,
the literal reading), plus its control poll. Meanwhile `--clients` threads reload the grid every
second over HTTP (load_clients.py: page, layout, dependencies, pages and grid callbacks) and a
poller reads `GET /api/v1/runs` every 0.5 s.

Figures. Ingest lag: at each poll (time t, when the reply arrived) a run showing last step L has
lag t - (when tick L was logged); a run not listed yet counts from its step 0; runs already
complete are not sampled. Grid latency: the grid data callback (full rows), and the whole reload.
Errors: any non-2xx or exception in the clients and the poller, every problem the collectors
counted (unreachable server, refused segment...), ERROR lines in the server log. Loss: after the
load, Monitors are closed, the server drains, is stopped, and DuckDB must hold exactly every
logged row of every run (no duplicate).

    python bench/load_test.py --quick                      # smoke: 20 runs, 15 s (~1 min)
    python bench/load_test.py                              # 200 runs, 10 Hz, 60 s (~3-4 min)
    python bench/load_test.py --post-every 1.0 0.1         # both readings, one after the other
    python bench/load_test.py --pin                        # server on one core, load on the other
    python bench/load_test.py --runs 200 100 50            # find the largest count meeting the goal
    python bench/load_test.py --serve-args "--receivers 1" # extra `trainlight serve` options
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/load_test.py`: make `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load_clients import Errors, GridClient, RunsPoller
from load_report import Outcome, check_store, lag_samples, print_outcome
from outbox_courier import deliver_leftovers

from tests.support.server import LiveServer, start_server, stop_server
from trainlight.collectors.schema import list_segment_files

WORKER = Path(__file__).with_name("load_worker.py")
READY_TIMEOUT_S = 180.0  # torch imports and Monitors in every worker, on a busy machine
JOIN_TIMEOUT_S = 35.0
DRAIN_STALL_S = 60.0  # give up waiting for the drain when the inbox stops shrinking this long
DRAIN_MAX_S = 1200.0


@dataclass(frozen=True)
class Load:
    runs: int
    hz: float
    duration: float
    clients: int
    post_every: float
    workers: int
    poll_every: float = 0.5

    @property
    def ticks(self) -> int:
        return int(self.hz * self.duration)


class Worker:
    """load_worker.py in a subprocess, driven through its stdin/stdout protocol."""

    def __init__(self, load: Load, url: str, first: int, count: int, result: Path) -> None:
        self.result = result
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                *("--url", url, "--first", str(first), "--count", str(count)),
                *("--hz", str(load.hz), "--ticks", str(load.ticks)),
                *("--post-every", str(load.post_every), "--result", str(result)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1",
                "TRAINLIGHT_OUTBOX": str(result.with_suffix(".outbox")),
            },
        )

    def expect(self, word: str) -> None:
        """Block until the worker prints `word` (the caller bounds the wait with a timer)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == word:
                return
        raise RuntimeError(f"worker exited ({self.process.wait()}) before printing {word!r}")

    def start(self, at: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{at!r}\n")
        self.process.stdin.flush()


def _all_print(workers: list[Worker], word: str, timeout: float) -> None:
    threads = [threading.Thread(target=w.expect, args=(word,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError(f"workers did not print {word!r} within {timeout:.0f} s")


def _start_workers(load: Load, server: LiveServer, workdir: Path) -> list[Worker]:
    n_workers = max(min(load.workers, load.runs), 1)
    per, extra = divmod(load.runs, n_workers)
    workers, first = [], 0
    for w in range(n_workers):
        count = per + (w < extra)
        result = workdir / f"worker-{w}.json"
        workers.append(Worker(load, server.base_url.rstrip("/"), first, count, result))
        first += count
    return workers


def _drained(server: LiveServer, expected: dict[str, int]) -> bool:
    if list_segment_files(server.store_dir / "inbox"):
        return False
    runs = {r["run_id"]: r for r in server.runs()}
    return all(
        runs.get(rid, {}).get("status") == "finished"
        and runs.get(rid, {}).get("last_step") == steps - 1
        for rid, steps in expected.items()
    )


@dataclass
class Readers:
    """The grid clients and the runs poller, with their stop switches and shared error tally."""

    clients: list[GridClient]
    poller: RunsPoller
    errors: Errors
    stop_clients: threading.Event
    stop_poller: threading.Event

    @classmethod
    def create(cls, base_url: str, load: Load) -> Readers:
        errors, stop_clients, stop_poller = Errors(), threading.Event(), threading.Event()
        clients = [GridClient(base_url, 1.0, stop_clients, errors) for _ in range(load.clients)]
        poller = RunsPoller(base_url, load.poll_every, stop_poller, errors)
        return cls(clients, poller, errors, stop_clients, stop_poller)

    def start(self) -> None:
        for thread in (*self.clients, self.poller):
            thread.start()

    def stop(self) -> None:
        self.stop_clients.set()
        self.stop_poller.set()
        for thread in (*self.clients, self.poller):
            if thread.is_alive():
                thread.join(JOIN_TIMEOUT_S)


def _drive(load: Load, workers: list[Worker], readers: Readers) -> tuple[list[Any], float]:
    """Start every worker at one moment, read while they log, collect their results."""
    _all_print(workers, "ready", READY_TIMEOUT_S)
    start_at = time.time() + 1.0
    for w in workers:
        w.start(start_at)
    readers.start()
    _all_print(workers, "logged", load.duration + 120)
    logged_at = time.time()
    readers.stop_clients.set()  # the poller goes on: the tail of the ingest lag counts too
    _all_print(workers, "closed", 300)
    return [json.loads(w.result.read_text()) for w in workers], logged_at


def _wait_drained(server: LiveServer, expected: dict[str, int]) -> int:
    """Wait while the ingester makes progress; returns the segments left in the inbox (0: done)."""
    inbox = server.store_dir / "inbox"
    deadline = time.monotonic() + DRAIN_MAX_S
    fewest, since = len(list_segment_files(inbox)), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < DRAIN_STALL_S:
        left = len(list_segment_files(inbox))
        if left == 0 and _drained(server, expected):
            return 0
        if left < fewest:
            fewest, since = left, time.monotonic()
        time.sleep(1.0)
    left = len(list_segment_files(inbox))
    print(f"WARNING: not drained: {left} segment(s) still in the inbox", flush=True)
    return left


def _settle(server: LiveServer, workers: list[Worker], expected: dict[str, int]) -> tuple[int, int]:
    """Deliver outbox leftovers (as a next collector would), then wait for the drain.

    Returns (segments that were left in outboxes, segments never ingested).
    """
    outboxes = [w.result.with_suffix(".outbox") for w in workers]
    leftovers = deliver_leftovers(outboxes, server.base_url)
    return leftovers, _wait_drained(server, expected)


def pin_process_tree(root_pid: int, cpus: set[int]) -> int:
    """Pin every thread of `root_pid` and of its descendants (receivers) to `cpus`; how many.

    Threads started later inherit the affinity of the thread that starts them."""
    family, pinned = {root_pid}, 0
    for entry in sorted(Path("/proc").iterdir(), key=lambda e: e.name):
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) in family:
            family.add(int(entry.name))
    for pid in family:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), cpus)
            pinned += 1
    return pinned


def scenario(load: Load, workdir: Path, pin: bool, serve_args: tuple[str, ...]) -> Outcome:
    """One load run on a fresh store; returns its figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = start_server(workdir / "store", workdir / "serve.log", extra_args=serve_args)
    if pin:  # the server on the last core, this process, its clients and workers on the others
        cores = sorted(os.sched_getaffinity(0))
        threads = pin_process_tree(server.process.pid, {cores[-1]})
        os.sched_setaffinity(0, set(cores[:-1]))
        print(f"pinned: server ({threads} threads) to CPU {cores[-1]}, load to {cores[:-1]}")
    workers = _start_workers(load, server, workdir)
    readers = Readers.create(server.base_url, load)
    try:
        results, logged_at = _drive(load, workers, readers)
        expected = {rid: steps for r in results for rid, steps in r["runs"].items()}
        leftovers, inbox_left = _settle(server, workers, expected)
        drain_s = time.time() - logged_at
    finally:
        readers.stop()
        for w in workers:
            if w.process.poll() is None:
                w.process.kill()
            w.process.wait(30)
        stop_server(server)
    return Outcome(
        load=load,
        lags=lag_samples(readers.poller.seen, results),
        reloads=[r for c in readers.clients for r in c.reloads],
        errors=readers.errors,
        collector_problems=_summed(r["problems"] for r in results),
        dropped_records=sum(int(r["dropped_records"]) for r in results),
        outbox_leftovers=leftovers,
        inbox_left=inbox_left,
        server_log=server.log_path.read_text(errors="replace"),
        store=check_store(server.store_dir / "trainlight.duckdb", expected),
        drain_s=drain_s,
        slip_s=max(_slip(r, load.hz) for r in results),
        close_s=max(float(r["close_s"]) for r in results),
    )


def _summed(dicts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + int(v)
    return total


def _slip(result: Mapping[str, Any], hz: float) -> float:
    """How late the worker's ticks ran against their schedule (its own load), max seconds."""
    start = float(result["start_at"])
    return max((t - (start + s / hz) for s, t in enumerate(result["tick_times"])), default=0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[200], help="one load per count")
    parser.add_argument("--hz", type=float, default=10.0, help="steps logged per second per run")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of logging")
    parser.add_argument("--clients", type=int, default=10, help="browsers reloading the grid")
    parser.add_argument("--post-every", type=float, nargs="+", default=[1.0], help="flush s")
    parser.add_argument("--workers", type=int, default=4, help="collector processes")
    parser.add_argument("--quick", action="store_true", help="20 runs, 15 s, 2 workers")
    parser.add_argument("--dir", type=Path, help="work directory (default: a new temp dir)")
    parser.add_argument(
        "--pin", action="store_true", help="server on one core, load generator on the others"
    )
    parser.add_argument("--serve-args", default="", help="extra `trainlight serve` arguments")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.duration, args.workers = [20], 15.0, 2
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="trainlight-load-"))
    print(f"load test: work dir {workdir}; {os.cpu_count()} CPUs, load {os.getloadavg()}")
    every_cpu = os.sched_getaffinity(0)
    ok = True
    for runs, post_every in itertools.product(args.runs, args.post_every):
        os.sched_setaffinity(0, every_cpu)
        load = Load(runs, args.hz, args.duration, args.clients, post_every, args.workers)
        print(f"\n== {load} pinned={args.pin} serve {args.serve_args!r}", flush=True)
        where = workdir / f"runs-{runs}-post-{post_every:g}"
        outcome = scenario(load, where, args.pin, tuple(args.serve_args.split()))
        ok &= print_outcome(outcome)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
