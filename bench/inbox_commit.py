"""Inbox writes per second: `write_atomically` per segment vs group commit (group_commit.py).

Why (issue 13, group commit): each acknowledged segment used to cost its own file fsync and
directory fsync. This writes `--segments` segments of `--size` bytes into `--runs` run directories
from `--threads` threads (waitress's request threads), both ways, into the same file system, and
prints segments/s and the ratio. Timings are noisy on a shared machine: compare the two lines
of one run.

    python bench/inbox_commit.py                     # 2,000 segments, 200 runs, 8 threads
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from trainlight.app.store.group_commit import GroupCommit
from trainlight.collectors.schema import write_atomically

Writer = Callable[[Path, bytes], None]


def rate(write: Writer, root: Path, args: argparse.Namespace) -> float:
    """Segments per second written by `write` from the threads."""
    dirs = [root / f"run-{i}" for i in range(args.runs)]
    for directory in dirs:
        directory.mkdir(parents=True)
    data = os.urandom(args.size)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        jobs = range(args.segments)
        list(pool.map(lambda i: write(dirs[i % args.runs] / f"{i}.parquet", data), jobs))
    return args.segments / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--size", type=int, default=3000, help="bytes per segment")
    parser.add_argument("--dir", type=Path, default=None, help="file system to test (default: tmp)")
    args = parser.parse_args()
    ways: list[tuple[str, Callable[[Path], Writer]]] = [
        ("write_atomically (fsync file + dir)", lambda root: write_atomically),
        ("group commit, syncfs", lambda root: GroupCommit(root).write),
        ("group commit, fsyncs", lambda root: GroupCommit(root, use_syncfs=False).write),
    ]
    rates = {}
    for name, make in ways:
        root = Path(tempfile.mkdtemp(prefix="trainlight-commit-", dir=args.dir))
        try:
            rates[name] = rate(make(root), root, args)
        finally:
            shutil.rmtree(root)
        ratio = rates[name] / rates[ways[0][0]]
        print(f"{name:40s} {rates[name]:8.0f} segments/s  x{ratio:.2f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
