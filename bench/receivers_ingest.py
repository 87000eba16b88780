"""Acknowledged segments per second: one server, with and without group commit and receivers.

Why (issue 13, receive path): every segment a server acknowledges costs a request thread the
footer check and a durable write, all under one process's GIL next to the ingester and the
dashboard. `--receivers N` moves that to other processes; `--group-commit` shares the flushes of
segments that arrive together. This measures what each buys, as ratios to the baseline (the main
process alone, a fsync per file) measured in the same run, on the same machine.

What runs: the real CLI server (tests/support/server.py) for each configuration, and `--clients`
processes holding `--runs` concurrent connections in all (one thread per run), each posting its
run's `--segments` small real segments (the collectors' encoder, ~2 KB) one after the other, as
fast as the answers come, through the collectors' own routing (collectors/receiver_routes.py:
after the first 202 a run goes to the receiver advertised for it). Timed: from the first post to
the last 202. Back-pressure is off (`--max-backlog-segments 0`): the ingester is not measured
here (bench/ingest_throughput.py is). Every post must be answered 202: any other answer is
counted and reported.

    python bench/receivers_ingest.py            # 200 runs x 10 segments, 5 configurations
    python bench/receivers_ingest.py --quick    # 50 runs x 5 segments
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.server import start_server, stop_server
from trainlight.collectors.receiver_routes import Routes
from trainlight.collectors.schema import RunHeader
from trainlight.collectors.writer import encode_segment

CONFIGURATIONS: dict[str, tuple[str, ...]] = {
    "baseline (main only)": (),
    "group commit": ("--group-commit",),
    "1 receiver": ("--receivers", "1"),
    "2 receivers": ("--receivers", "2"),
    "2 receivers + group commit": ("--receivers", "2", "--group-commit"),
}
HEADERS = {"X-Trainlight": "1"}
SEGMENT_TYPE = {"Content-Type": "application/vnd.apache.parquet"}


def segment(run_id: str, seq: int) -> bytes:
    now = time.time()
    rows = {
        "table": ["metrics"] * 20,
        "step": [seq * 10 + i // 2 for i in range(20)],
        "key": ["loss", "acc"] * 10,
        "value": [float(i) for i in range(20)],
    }
    header = RunHeader(run_id=run_id, seq=seq, name=run_id, sent_at=now, started_at=now)
    return encode_segment([rows], header)


def post_run(base_url: str, run_id: str, segments: list[bytes], failures: list[str]) -> None:
    routes = Routes(base_url, HEADERS, read_timeout_s=30)
    for seq, payload in enumerate(segments):
        path = "/api/v1/ingest?" + urlencode({"run_id": run_id, "seq": seq})
        try:
            reply = routes.request(run_id, "POST", path, 30, payload, SEGMENT_TYPE)
        except OSError as exc:
            failures.append(repr(exc))
            continue
        if reply.status != 202:
            failures.append(f"HTTP {reply.status}: {reply.text[:100]}")
        routes.learn(reply)


def client(
    base_url: str,
    run_ids: list[str],
    segments: int,
    start: float,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    payloads = {run_id: [segment(run_id, seq) for seq in range(segments)] for run_id in run_ids}
    failures: list[str] = []
    threads = [
        threading.Thread(target=post_run, args=(base_url, r, payloads[r], failures))
        for r in run_ids
    ]
    time.sleep(max(0.0, start - time.time()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((time.time(), failures))


def measure(
    args: argparse.Namespace, extra: tuple[str, ...], work: Path
) -> tuple[float, list[str]]:
    """(acknowledged segments per second, failed posts) for one server configuration."""
    store = work / f"store-{len(list(work.iterdir()))}"
    store.mkdir()
    server = start_server(
        store, work / "serve.log", extra_args=(*extra, "--max-backlog-segments", "0")
    )
    try:
        run_ids = [f"bench-{i:04d}" for i in range(args.runs)]
        start = time.time() + 3.0  # every client built its segments and threads by then
        results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        clients = [
            multiprocessing.Process(
                target=client,
                args=(server.base_url, run_ids[i :: args.clients], args.segments, start, results),
            )
            for i in range(args.clients)
        ]
        for process in clients:
            process.start()
        finished = [results.get(timeout=600) for _ in clients]
        for process in clients:
            process.join(timeout=60)
    finally:
        stop_server(server)
    elapsed = max(end for end, _ in finished) - start
    failures = [f for _, fs in finished for f in fs]
    return (args.runs * args.segments - len(failures)) / elapsed, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.segments = 50, 5
    print(
        f"{args.runs} concurrent runs x {args.segments} segments, {args.clients} client "
        f"processes, {multiprocessing.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(prefix="trainlight-receivers-") as tmp:
        baseline = 0.0
        for name, extra in CONFIGURATIONS.items():
            rate, failed = measure(args, extra, Path(tmp))
            baseline = baseline or rate
            print(
                f"{name:28s} {rate:8.0f} segments/s acknowledged  x{rate / baseline:.2f}"
                f"  ({len(failed)} failed posts)",
                flush=True,
            )
            for reason in sorted(set(failed))[:3]:
                print(f"    failed: {reason[:160]}")


if __name__ == "__main__":
    main()
