"""Crash safety under load: `kill -9` trainers and the server at random moments; audit the store.

Why (issue 7, crash safety figures): a training process or the dashboard server may die at any
instant (OOM killer, preemption, Ctrl-\\). Afterwards the store must open, hold no duplicate row,
and a killed trainer may lose at most the rows logged since its last flush (one flush interval).

What runs: the real CLI server (`python -m trainlight.app.cli serve`, tests/support/server.py) on
a fixed port, and `--trainers` real training processes at once (tests/support/trainer.py: a real
`Monitor`, deterministic values, a `progress <step> <unix time>` line every few steps), the first
`--http` of them shipping over HTTP (`store="http://127.0.0.1:<port>"`, outbox on disk), the rest
through the inbox. The clock starts once they all log. During `--duration` seconds,
`--trainer-kills` SIGKILLs hit a random trainer that has logged for at least `--min-age` (default
two flush intervals), and `--server-kills` SIGKILLs hit the server, each restarted at once on the
same store and port; a slot whose run was killed or finished gets a new run. Kill times are
stratified-random (one per equal window, uniform within it; `--seed`). Then the trainers left
finish, a fresh server drains the inbox (outbox leftovers are delivered as the next collector
process would), it is stopped, and the store is audited with plain DuckDB SQL (crash_audit.py).

Loss of a killed trainer, in seconds of training: kill time minus the time its last stored step
was logged, read from its progress lines (step -> unix time, interpolated) and, as a cross-check,
from the stored `wall_time`. Bound: flush interval + `--tolerance` (encode/write time and
scheduling jitter of the flush thread on a busy machine). Rows lost: (last progress step printed
- last stored step) x 3 keys, a lower bound exact to within `--progress-every` steps.

    python bench/crash_safety.py --quick     # smoke: 6 trainer + 3 server kills, ~1-1.5 min
    python bench/crash_safety.py             # 20 trainer + 10 server kills, ~4-5 min
    python bench/crash_safety.py --quick --receivers 2 --receiver-kills 6 --http 3

With `--receivers N` the server runs N receivers, which the HTTP trainers post to after their
first answer; `--receiver-kills` SIGKILLs a random one at stratified-random times (the server
starts another on the same port; its collectors fall back to the main port meanwhile).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python bench/crash_safety.py`: make `tests.support` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crash_audit import audit, print_report
from crash_trainer import TrainerProcess, TrainerSpec
from outbox_courier import deliver_leftovers

from tests.support.processes import free_port
from tests.support.server import (
    LiveServer,
    receiver_pids,
    start_server,
    stop_server,
    wait_until,
)
from trainlight.collectors.schema import list_segment_files

HARD_EXTRA_S = 120.0  # after --duration: time allowed for postponed kills and finishing runs
DRAIN_TIMEOUT_S = 120.0
WARMUP_S = 90.0  # trainers start slowly on a busy machine (torch import)


@dataclass(frozen=True)
class Plan:
    trainers: int
    http: int
    trainer_kills: int
    server_kills: int
    duration: float
    flush: float
    tolerance: float
    step_sleep: float
    progress_every: int
    steps: tuple[int, int]
    seed: int
    min_age: float  # a trainer is killed only after logging this long
    receivers: int = 0  # `serve --receivers N`: HTTP trainers post to them
    receiver_kills: int = 0  # SIGKILLs of a random receiver (the server starts another)


@dataclass
class ServerKill:
    at: float  # unix time of the SIGKILL
    pending_segments: int  # inbox files waiting at that moment: ingest was under way
    restart_s: float | None = None  # SIGKILL -> serving line of the new server


@dataclass
class ServerKeeper:
    """The one live server; killed with SIGKILL and restarted (on a thread) on the same port."""

    store: Path
    logs: Path
    port: int
    receivers: int = 0
    server: LiveServer | None = None
    starts: int = 0
    kills: list[ServerKill] = field(default_factory=list)
    error: BaseException | None = None
    _restart: threading.Thread | None = None

    def start(self) -> None:
        self.starts += 1
        log = self.logs / f"serve-{self.starts:02d}.log"
        extra = ("--receivers", str(self.receivers)) if self.receivers else ()
        self.server = start_server(self.store, log, port=self.port, extra_args=extra)

    @property
    def up(self) -> bool:
        return self.server is not None and (self._restart is None or not self._restart.is_alive())

    def kill_and_restart(self) -> None:
        assert self.server is not None
        kill = ServerKill(time.time(), len(list_segment_files(self.store / "inbox")))
        self.server.process.send_signal(signal.SIGKILL)
        kill.at = time.time()
        self.server.process.wait(timeout=30)
        self.server.http.close()
        self.kills.append(kill)
        self.server = None
        self._restart = threading.Thread(target=self._restart_now, args=(kill,), daemon=True)
        self._restart.start()

    def kill_a_receiver(self, rng: random.Random) -> bool:
        """SIGKILL one receiver of the live server (it starts another); False if none is up."""
        pids = receiver_pids(self.server.process.pid) if self.server is not None else []
        if not pids:
            return False
        try:
            os.kill(rng.choice(pids), signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def _restart_now(self, kill: ServerKill) -> None:
        try:
            self.start()
            kill.restart_s = time.time() - kill.at
        except BaseException as exc:  # reported by the main loop, which stops the bench
            self.error = exc

    def wait_up(self, timeout: float) -> LiveServer:
        if self._restart is not None:
            self._restart.join(timeout)
        if self.error is not None or self.server is None:
            raise RuntimeError(f"server did not come back: {self.error!r}")
        return self.server

    def stop(self) -> None:
        if self._restart is not None:
            self._restart.join(60)
        if self.server is not None:
            stop_server(self.server)
            self.server = None


def stratified(rng: random.Random, n: int, start: float, end: float) -> list[float]:
    """n times in [start, end): one uniform draw in each of n equal windows (spread, yet random)."""
    width = (end - start) / max(n, 1)
    return [start + width * (i + rng.random()) for i in range(n)]


class Driver:
    """Keeps `plan.trainers` trainers running and fires the kills on schedule."""

    def __init__(self, plan: Plan, keeper: ServerKeeper, workdir: Path) -> None:
        self.plan, self.keeper, self.workdir = plan, keeper, workdir
        self.rng = random.Random(plan.seed)
        self.launched: list[TrainerProcess] = []
        self.unplanned_kills = 0
        self.receiver_kills = 0

    def launch(self, slot: int) -> TrainerProcess:
        http = slot < self.plan.http
        spec = TrainerSpec(
            name=f"crash s{slot} n{len(self.launched)}",
            store=f"http://127.0.0.1:{self.keeper.port}" if http else str(self.keeper.store),
            transport="http" if http else "inbox",
            steps=self.rng.randint(*self.plan.steps),
            flush=self.plan.flush,
            step_sleep=self.plan.step_sleep,
            progress_every=self.plan.progress_every,
            outbox=self.workdir / "outbox",
        )
        trainer = TrainerProcess(spec)
        self.launched.append(trainer)
        return trainer

    def run(self) -> None:
        plan = self.plan
        slots = [self.launch(slot) for slot in range(plan.trainers)]
        # The clock starts once the first trainers log: every kill then lands under load.
        wait_until(lambda: all(t.eligible(0) for t in slots), WARMUP_S, 0.1, "trainers logging")
        begin = time.monotonic()
        trainer_kills = stratified(self.rng, plan.trainer_kills, 1.0, plan.duration - 1.0)
        server_kills = stratified(self.rng, plan.server_kills, 1.0, plan.duration - 3.0)
        receiver_kills = stratified(self.rng, plan.receiver_kills, 1.0, plan.duration - 1.0)
        while (now := time.monotonic() - begin) < plan.duration + HARD_EXTRA_S:
            if self.keeper.error is not None:
                raise RuntimeError(f"server restart failed: {self.keeper.error!r}")
            refill = now < plan.duration or bool(trainer_kills)
            for slot, trainer in enumerate(slots):
                if trainer.exited and refill:
                    slots[slot] = self.launch(slot)
            if trainer_kills and now >= trainer_kills[0] and self._kill_a_trainer(slots, now):
                trainer_kills.pop(0)
            if server_kills and now >= server_kills[0] and self.keeper.up:
                self.keeper.kill_and_restart()
                server_kills.pop(0)
                print(f"  {now:6.1f} s  server killed ({len(self.keeper.kills)})", flush=True)
            receiver_due = bool(receiver_kills) and now >= receiver_kills[0] and self.keeper.up
            if receiver_due and self.keeper.kill_a_receiver(self.rng):  # else: none up yet
                receiver_kills.pop(0)
                self.receiver_kills += 1
                print(f"  {now:6.1f} s  receiver killed ({self.receiver_kills})", flush=True)
            pending = trainer_kills or server_kills or receiver_kills or refill
            if not pending and all(t.exited for t in slots):
                break
            time.sleep(0.05)
        for trainer in self.launched:  # only when the hard limit passed: counted, not hidden
            if not trainer.exited:
                trainer.kill()
                self.unplanned_kills += 1
        for trainer in self.launched:
            trainer.finish()

    def _kill_a_trainer(self, slots: list[TrainerProcess], now: float) -> bool:
        ready = [t for t in slots if t.eligible(self.plan.min_age)]
        if not ready:
            return False
        victim = self.rng.choice(ready)
        victim.kill()
        print(
            f"  {now:6.1f} s  trainer killed: {victim.spec.name} ({victim.spec.transport})",
            flush=True,
        )
        return True


def drain(keeper: ServerKeeper, driver: Driver) -> tuple[int, float]:
    """Restart the server cleanly, deliver leftovers, wait until everything is ingested."""
    keeper.stop()
    keeper.start()
    server = keeper.wait_up(60)
    t0 = time.monotonic()
    leftovers = deliver_leftovers([driver.workdir / "outbox"], server.base_url)
    ended = {t.run_id for t in driver.launched if t.run_id}

    def settled() -> bool:  # which end state is right is the audit's business
        if list_segment_files(keeper.store / "inbox"):
            return False
        runs = {r["run_id"]: r["status"] for r in server.runs()}
        return all(runs[rid] != "running" for rid in ended if rid in runs)

    try:
        server.wait_for(settled, DRAIN_TIMEOUT_S, "inbox drained, runs in their final status")
    except TimeoutError as exc:
        print(f"WARNING: {str(exc)[:400]}")
    seconds = time.monotonic() - t0
    keeper.stop()
    return leftovers, seconds


def parse_plan(argv: list[str] | None = None) -> tuple[Plan, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6+3 kills in 40 s (smoke run)")
    parser.add_argument("--trainers", type=int, default=4, help="trainers running at once")
    parser.add_argument("--http", type=int, default=1, help="of which over HTTP")
    parser.add_argument("--trainer-kills", type=int, default=20)
    parser.add_argument("--server-kills", type=int, default=10)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of kills")
    parser.add_argument("--flush-interval", type=float, default=0.5)
    parser.add_argument("--tolerance", type=float, default=0.25, help="seconds over one flush")
    parser.add_argument("--step-sleep", type=float, default=0.002)
    parser.add_argument("--progress-every", type=int, default=10)
    parser.add_argument("--steps", type=int, nargs=2, default=(2000, 6000), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--min-age", type=float, help="kill only trainers logging this long (default 2 flushes)"
    )
    parser.add_argument("--receivers", type=int, default=0, help="serve --receivers N")
    parser.add_argument(
        "--receiver-kills", type=int, default=0, help="SIGKILLs of a random receiver"
    )
    parser.add_argument("--dir", type=Path, help="work directory (default: a new temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trainer_kills, args.server_kills, args.duration = 6, 3, 40.0
    plan = Plan(
        trainers=args.trainers,
        http=min(args.http, args.trainers),
        trainer_kills=args.trainer_kills,
        server_kills=args.server_kills,
        duration=args.duration,
        flush=args.flush_interval,
        tolerance=args.tolerance,
        step_sleep=args.step_sleep,
        progress_every=args.progress_every,
        steps=(args.steps[0], args.steps[1]),
        seed=args.seed,
        min_age=2 * args.flush_interval if args.min_age is None else args.min_age,
        receivers=args.receivers,
        receiver_kills=args.receiver_kills if args.receivers else 0,
    )
    return plan, args.dir


def main() -> int:
    plan, workdir = parse_plan()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="trainlight-crash-"))
    (workdir / "store").mkdir(parents=True, exist_ok=True)
    print(f"crash safety: {plan}\nwork dir {workdir}", flush=True)
    keeper = ServerKeeper(workdir / "store", workdir, free_port(), plan.receivers)
    keeper.start()
    driver = Driver(plan, keeper, workdir)
    started = time.monotonic()
    try:
        driver.run()
        leftovers, drain_s = drain(keeper, driver)
    finally:
        for trainer in driver.launched:
            trainer.kill()
        keeper.stop()
    report = audit(keeper.store / "trainlight.duckdb", driver.launched, plan.flush)
    print_report(report, plan, keeper.kills, driver.unplanned_kills, leftovers, drain_s)
    if plan.receivers:
        print(f"receivers: {plan.receivers}, killed {driver.receiver_kills} time(s)")
    print(f"\ntotal {time.monotonic() - started:.0f} s; server logs in {workdir}")
    return 0 if report.ok(plan.flush + plan.tolerance) else 1


if __name__ == "__main__":
    sys.exit(main())
