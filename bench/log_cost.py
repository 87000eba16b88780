"""Cost of `Monitor.log(step, 4 scalars)` against 4 x TensorBoard `add_scalar`, same run.

Why: `log()` sits in every training step, so the promise of trainlight is that it costs almost
nothing there (goal: >= 20x cheaper than TensorBoard's ~180 us for 4 scalars, i.e. <= 10 us).
Both loggers are timed in the same process, interleaved repeat by repeat, so the ratio holds on
whatever machine runs this (the load average is printed: a busy machine inflates every number).

Measured three ways:
- full speed: `log()` called back to back, with Python floats and with realistic 0-d CPU tensors
  (losses of a tiny GAN-ish model, still attached to autograd: `requires_grad=True`);
- the same tensor loop with the cyclic GC paused, which separates log()'s own cost from the GC
  traversing the records that wait in the buffer;
- inside a real tiny training loop (forward, backward, optimizer step, then log the fresh losses),
  timing only the logging call: caches and buffer occupancy as in training.

The Monitor writes to a temporary store with its flush thread running as in training
(`flush_interval=1 s`) and a buffer big enough that nothing is dropped. The flush thread's work
(tensor copy, Parquet encoding, file write) is off the hot path but shares the CPU and the GIL, so
it is reported too, amortised per logged step, next to TensorBoard's (`writer.flush()`).

Needs TensorBoard, which is not a trainlight dependency: `pip install tensorboard`.

    python bench/log_cost.py            # ~60 s
    python bench/log_cost.py --quick    # ~15 s
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainlight.collectors import Monitor

try:
    from torch.utils.tensorboard import SummaryWriter
except ImportError as exc:  # pragma: no cover - hand-run script
    raise SystemExit("this benchmark needs TensorBoard: pip install tensorboard") from exc

GOAL_US = 10.0  # issue: <= 10 us per log() of 4 scalars
GOAL_RATIO = 20.0
TB_REFERENCE_US = 180.0  # issue: TensorBoard, 4 scalars per step

Losses = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Values = tuple[object, object, object, object]
LogFn = Callable[[int, Values], None]  # log one step's 4 scalars


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[int, int], float]  # (first_step, n_steps) -> us per step
    steps: int  # steps per repeat


class TinyGan:
    """A tiny generator/discriminator pair whose step returns four 0-d losses with autograd."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.gen = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
        self.disc = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
        params = [*self.gen.parameters(), *self.disc.parameters()]
        self.opt = torch.optim.SGD(params, lr=1e-3)
        self.z, self.real = torch.randn(32, 16), torch.randn(32, 8)

    def losses(self) -> Losses:
        fake = self.gen(self.z)
        d_loss = self.disc(fake).mean() - self.disc(self.real).mean()
        gp = (self.disc(fake) ** 2).mean()
        content = nn.functional.l1_loss(fake, self.real)
        return d_loss, gp, content, d_loss + 10 * gp + content

    def step(self) -> Losses:
        losses = self.losses()
        self.opt.zero_grad(set_to_none=True)
        losses[3].backward()
        self.opt.step()
        return losses


def trainlight_log(mon: Monitor) -> LogFn:
    log = mon.log

    def log4(step: int, v: Values) -> None:
        log(step, d_loss=v[0], gp=v[1], content=v[2], total=v[3])

    return log4


def tensorboard_log(writer: SummaryWriter) -> LogFn:
    add = writer.add_scalar

    def log4(step: int, v: Values) -> None:
        add("d_loss", v[0], step)
        add("gp", v[1], step)
        add("content", v[2], step)
        add("total", v[3], step)

    return log4


def full_speed(log4: LogFn, values: Values, gc_off: bool = False) -> Callable[[int, int], float]:
    """Back-to-back calls; with `gc_off`, the cyclic GC is paused while they run."""

    def run(first: int, n: int) -> float:
        if gc_off:
            gc.disable()
        try:
            start = time.perf_counter_ns()
            for step in range(first, first + n):
                log4(step, values)
            return (time.perf_counter_ns() - start) / n / 1000
        finally:
            gc.enable()

    return run


def in_training(log4: LogFn, model: TinyGan) -> Callable[[int, int], float]:
    """A real train step between calls; only the logging call is timed."""

    def run(first: int, n: int) -> float:
        total = 0
        for step in range(first, first + n):
            losses = model.step()
            start = time.perf_counter_ns()
            log4(step, losses)
            total += time.perf_counter_ns() - start
        return total / n / 1000

    return run


class GcClock:
    """Time spent in the cyclic garbage collector, by generation, from `gc.callbacks`."""

    def __init__(self) -> None:
        self.ns = 0
        self.full = 0  # generation-2 collections
        self._start = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
            return
        self.ns += time.perf_counter_ns() - self._start
        self.full += int(info["generation"] == 2)


@dataclass(frozen=True)
class Result:
    us: float  # median over repeats of the mean logging cost per step
    gc_us: float  # GC time during the case (timed or not) per step, over all repeats
    full_gcs: int  # generation-2 collections during the case, all repeats


def measure(cases: list[Case], repeats: int, settle: Callable[[], None]) -> dict[str, Result]:
    """Each case `repeats` times, interleaved within each repeat so drift hits all alike.

    `settle` runs untimed before every case so that each starts with empty buffers and a fresh
    GC tally, not with the backlog or the garbage the previous case left behind.
    """
    for case in cases:  # warm-up: imports, allocator, first protobufs
        case.run(0, min(case.steps, 200))
    clock = GcClock()
    gc.callbacks.append(clock)
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    gc_ns = dict.fromkeys(samples, 0)
    full = dict.fromkeys(samples, 0)
    try:
        for r in range(repeats):
            for case in cases:
                settle()
                ns, n_full = clock.ns, clock.full
                samples[case.name].append(case.run((r + 1) * case.steps, case.steps))
                gc_ns[case.name] += clock.ns - ns
                full[case.name] += clock.full - n_full
    finally:
        gc.callbacks.remove(clock)
    steps = {case.name: case.steps * repeats for case in cases}
    return {
        name: Result(statistics.median(us), gc_ns[name] / steps[name] / 1000, full[name])
        for name, us in samples.items()
    }


def flush_us_per_step(root: Path, values: Values, n: int) -> tuple[float, float]:
    """The background side per logged step: trainlight's flush() and TensorBoard's flush()."""
    mon = Monitor("bench-flush", store=root / "flush", flush_interval=3600, heartbeat_interval=3600)
    full_speed(trainlight_log(mon), values)(0, n)
    start = time.perf_counter_ns()
    mon.flush()
    trainlight_us = (time.perf_counter_ns() - start) / n / 1000
    mon.close()
    writer = SummaryWriter(log_dir=str(root / "tb-flush"), max_queue=10 * n, flush_secs=3600)
    full_speed(tensorboard_log(writer), values)(0, n)
    start = time.perf_counter_ns()
    writer.flush()
    tensorboard_us = (time.perf_counter_ns() - start) / n / 1000
    writer.close()
    return trainlight_us, tensorboard_us


def report(results: dict[str, Result], flush_side: tuple[float, float]) -> None:
    print(f"{'case':<40}{'us/step':>9}{'gc us/step':>12}{'full gcs':>10}")
    for name, res in results.items():
        print(f"{name:<40}{res.us:>9.2f}{res.gc_us:>12.2f}{res.full_gcs:>10}")
    for kind in ("floats", "tensors", "tensors, in training loop"):
        trainlight_us = results[f"trainlight {kind}"].us
        ratio = results[f"tensorboard {kind}"].us / trainlight_us
        ok = "meets" if trainlight_us <= GOAL_US and ratio >= GOAL_RATIO else "MISSES"
        print(
            f"{kind:<26} tensorboard/trainlight = {ratio:6.1f}x  "
            f"({ok} goal >= {GOAL_RATIO:.0f}x and <= {GOAL_US:.0f} us)"
        )
    print(
        f"flush side per step (tensors, amortised): trainlight {flush_side[0]:.2f} us, "
        f"tensorboard {flush_side[1]:.2f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (~15 s)")
    parser.add_argument("--calls", type=int, default=None, help="trainlight calls per repeat")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    n = args.calls or (5_000 if args.quick else 20_000)
    n_tb = max(n // 10, 200)  # TensorBoard is ~100x slower and its cost does not drift with n
    n_train = max(n // 20, 200)  # training-loop steps per repeat (each ~0.3-1 ms of training)
    repeats = args.repeats or (3 if args.quick else 5)

    model = TinyGan()
    with torch.no_grad():
        floats: Values = tuple(float(t) for t in model.losses())  # type: ignore[assignment]
    tensors: Values = model.losses()
    with tempfile.TemporaryDirectory(prefix="trainlight-bench-") as tmp:
        root = Path(tmp)
        mon = Monitor("bench-log", store=root / "store", buffer_size=(repeats + 2) * n * 4)
        writer = SummaryWriter(log_dir=str(root / "tb"))  # defaults: max_queue=10, flush_secs=120
        tl, tb = trainlight_log(mon), tensorboard_log(writer)
        cases = [
            Case("trainlight floats", full_speed(tl, floats), n),
            Case("tensorboard floats", full_speed(tb, floats), n_tb),
            Case("trainlight tensors", full_speed(tl, tensors), n),
            Case("tensorboard tensors", full_speed(tb, tensors), n_tb),
            Case("trainlight tensors, gc off", full_speed(tl, tensors, gc_off=True), n),
            Case("trainlight tensors, in training loop", in_training(tl, model), n_train),
            Case("tensorboard tensors, in training loop", in_training(tb, model), n_train),
        ]

        def settle() -> None:
            mon.flush()
            writer.flush()
            gc.collect()  # each case pays only for the collections its own objects cause

        results = measure(cases, repeats, settle)
        dropped = mon.dropped_records
        mon.close()
        problems = mon.problems.snapshot()
        writer.close()
        flush_side = flush_us_per_step(root, tensors, min(n, 5_000))

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}; 4 scalars/step; median of {repeats} repeats of the mean")
    print(f"steps/repeat: trainlight {n}, tensorboard {n_tb}, training loop {n_train}")
    print(f"load average {load}; flush thread on (1 s); dropped records: {dropped}")
    if problems:
        print(f"monitor problems: {problems}")
    report(results, flush_side)
    start = time.perf_counter_ns()
    gc.collect()
    full_ms = (time.perf_counter_ns() - start) / 1e6
    print(
        f"one full gc.collect() here: {full_ms:.0f} ms over {len(gc.get_objects())} tracked "
        f"objects; issue's TensorBoard reference: {TB_REFERENCE_US:.0f} us per step"
    )


if __name__ == "__main__":
    main()
