"""Ingest throughput with alerts going to a black-holed webhook, against no alerts, same run.

Why (issue 17): a dead receiver must never slow ingest. The ingester only records alert rows
after each pass (app/alerts/outbox.py); a thread of its own delivers them (sender.py), so a
receiver that accepts connections and never answers costs that thread its timeouts. Goal: ingest
throughput with the black hole within 5% of no alerts at all.

Each case ingests the same inbox into a fresh store: `--runs` runs (every third one logs a NaN
loss at step 50, so its `nonfinite` verdict turns red and is alerted) of `--segments` segments of
100 loss readings, dropped in waves of one segment per run and ingested pass by pass as a live
server would, with `after_pass` (recording alerts) and the sender thread running in the alerts
case. Printed: segments/s per case (median of rounds, the order rotating), their ratio, and how
many alerts were recorded and how many sends were still pending against the black hole.

    python bench/alerts_ingest.py            # ~1 min
    python bench/alerts_ingest.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.segments import metrics_segment
from tests.support.webhook_receiver import black_hole
from trainlight.app.alerts.destinations import destination
from trainlight.app.alerts.sender import AlertSender, SendSettings
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors.schema import StoreLayout, write_atomically

GOAL = 1.05


def waves(runs: int, segments: int) -> list[list[tuple[str, int, bytes]]]:
    """Per wave, one segment of each run: (run id, seq, bytes)."""
    out = []
    for seq in range(segments):
        wave = []
        for r in range(runs):
            rows = [(seq * 100 + i, "loss", 1.0 / (1 + seq * 100 + i)) for i in range(100)]
            if r % 3 == 0 and seq == 0:
                rows[50] = (50, "loss", math.nan)
            wave.append((f"run-{r}", seq, metrics_segment(f"run-{r}", seq, rows, name=f"run {r}")))
        out.append(wave)
    return out


def ingest(root: Path, data: list[list[tuple[str, int, bytes]]], hook: str | None) -> tuple:
    store = Store(StoreLayout(root))
    stop = threading.Event()
    sender, thread = None, None
    if hook is not None:
        sender = AlertSender(store, [destination(hook)], "http://x", SendSettings(timeout=2.0))
        thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
        thread.start()
    ingester = Ingester(store, after_pass=sender.after_ingest if sender else None)
    elapsed = 0.0
    try:
        for wave in data:
            for run_id, seq, payload in wave:
                store.layout.run_inbox(run_id).mkdir(parents=True, exist_ok=True)
                write_atomically(store.layout.segment_path(run_id, seq), payload)
            started = time.perf_counter()
            ingester.ingest_pending()
            if ingester.after_pass is not None:
                ingester.after_pass()
            elapsed += time.perf_counter() - started
        with store.read() as cur:
            (recorded,) = cur.execute("SELECT count(*) FROM alerts").fetchone() or (0,)
            (pending,) = cur.execute(
                "SELECT count(*) FROM alerts WHERE status = 'pending'"
            ).fetchone() or (0,)
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=10)  # its send in flight times out first
        store.close()
    return sum(len(w) for w in data) / elapsed, recorded, pending


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--segments", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    runs = args.runs or (30 if args.quick else 60)
    segments = args.segments or (5 if args.quick else 10)
    rounds = args.rounds or (3 if args.quick else 5)
    data = waves(runs, segments)
    rates: dict[str, list[float]] = {"no alerts": [], "black-holed webhook": []}
    facts = (0, 0)
    with black_hole() as hole, tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for case in list(rates)[r % 2 :] + list(rates)[: r % 2]:
                hook = hole if case != "no alerts" else None
                rate, recorded, pending = ingest(Path(tmp) / f"{r}-{len(case)}", data, hook)
                rates[case].append(rate)
                if hook is not None:
                    facts = (recorded, pending)
    base = statistics.median(rates["no alerts"])
    print(f"{runs} runs x {segments} segments of 100 readings, {rounds} rounds")
    for case, values in rates.items():
        ratio = statistics.median(values) / base
        print(f"  {case:22s} {statistics.median(values):8.1f} segments/s  {ratio:5.3f}x")
    slow = base / statistics.median(rates["black-holed webhook"])
    verdict = "ok" if slow <= GOAL else "MISSED"
    print(f"  ingest time with the black hole: {slow:.3f}x (goal <= {GOAL}x: {verdict})")
    print(f"  alerts recorded {facts[0]}, still pending against the black hole {facts[1]}")


if __name__ == "__main__":
    main()
