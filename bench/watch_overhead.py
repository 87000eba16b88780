"""Step-time cost of `ActivationWatcher` (what `mon.watch(model, every=N)` installs), same run.

Why: activation hooks sit inside every forward pass, so the promise is that watching costs almost
nothing (goal from the issue: <= 1.05x the unwatched step at every=1, <= 1.01x at every=10).

A small CNN (two 3x3 convs of 16 and 32 channels on 1x28x28 generated data, ReLU, max-pool, linear
head), batch 64, on the CPU, full training steps (forward, backward, SGD step). Identical copies
are timed in blocks of 10 steps, interleaved block by block (the order rotates) so that drift and
other load hit all alike:
- no watch, and a second unwatched copy: the A/A control, whose ratio shows the noise floor;
- naive hooks every=1: the straightforward per-batch hook (`torch.var_mean`, `(x > 0).sum()`,
  `isfinite(x).sum()`, Chan's merge), i.e. the "before" of the optimisation;
- watch every=1 and every=10: `ActivationWatcher`, a real background thread calling `collect()`
  every `--flush-interval` seconds, as the flush thread would;
- the same CNN written with `F.relu` calls (`FunctionalCnn`), unwatched and watched every=1 and
  every=10 (function calls seen by the torch function mode of observed passes); its ratios are
  to its own unwatched blocks.
Printed: the median step time per case and the median over blocks of the ratio to the unwatched
block of the same round (the figure judged against the goal); then, measured separately (timers
distort the step), the time spent inside the hooks per step as a fraction of the unwatched step:
the direct cost, free of the noise floor; and the extra microseconds of one unobserved pass
(the root hooks' gate), on a one-weight model. The load average is printed: a busy machine
inflates every number.

    python bench/watch_overhead.py            # ~60 s
    python bench/watch_overhead.py --quick    # ~20 s
    python bench/watch_overhead.py --profile  # also: torch.profiler table of the every=1 case
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.activations import ActivationWatcher

GOALS = {
    "watch every=1": 1.05,
    "watch every=10": 1.01,
    "F.relu watch every=1": 1.05,
    "F.relu watch every=10": 1.01,
}
BLOCK = 10  # steps per timed block: a multiple of every=10, so each block has one observed pass
Batches = list[tuple[torch.Tensor, torch.Tensor]]


def make_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


class FunctionalCnn(nn.Module):
    """`make_cnn` written as much code is: F.relu calls instead of ReLU modules."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.head = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.c1(x)), 2)
        h = F.max_pool2d(F.relu(self.c2(h)), 2)
        return self.head(h.flatten(1))


class OneWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x))


@dataclass
class Case:
    name: str
    model: nn.Module
    opt: torch.optim.Optimizer
    watcher: ActivationWatcher | None = None
    ms: list[float] = field(default_factory=list)  # per block: mean ms per step
    base: Case | None = None  # the unwatched case of the same model (None: the first case)


class NaiveHook:
    """The straightforward hook: one batch's full statistics per call, merged at once."""

    def __init__(self) -> None:
        self.state: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __call__(self, module: nn.Module, args: Any, out: torch.Tensor) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        with torch.no_grad():
            dims = (0, *range(2, out.dim()))
            var, mean = torch.var_mean(out, dim=dims, correction=0)
            n_b = out.numel() // out.shape[1]
            fired, bad = (out > 0).sum(dims), out.numel() - torch.isfinite(out).sum()
            if self.state is None:
                self.state = (n_b, mean, var * n_b, fired, bad)
                return
            n_a, mean_a, m2_a, fired_a, bad_a = self.state
            delta = mean - mean_a
            n = n_a + n_b
            mean_a = mean_a + delta * (n_b / n)
            m2_a = m2_a + var * n_b + delta * delta * (n_a * n_b / n)
            self.state = (n, mean_a, m2_a, fired_a + fired, bad_a + bad)


def make_case(name: str, base: nn.Module, hook: str | int | None, problems: Problems) -> Case:
    model = copy.deepcopy(base)
    case = Case(name, model, torch.optim.SGD(model.parameters(), lr=0.01))
    if hook == "naive":
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.register_forward_hook(NaiveHook())
    elif isinstance(hook, int):
        case.watcher = ActivationWatcher(model, step_of=lambda: 0, problems=problems, every=hook)
    return case


def train_steps(case: Case, batches: Batches, n: int) -> float:
    """Run `n` training steps; return milliseconds per step."""
    start = time.perf_counter()
    for i in range(n):
        x, y = batches[i % len(batches)]
        case.opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(case.model(x), y).backward()
        case.opt.step()
    return (time.perf_counter() - start) / n * 1000


class Flusher:
    """A real background thread that collects every watcher's rows, like the writer's flush."""

    def __init__(self, sources: list[ActivationWatcher], interval: float) -> None:
        self.sources, self.interval, self.rows = sources, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.drain()

    def drain(self) -> None:
        for source in self.sources:
            parts = source.collect() or []
            self.rows += sum(len(part["step"]) for part in parts)

    def __enter__(self) -> Flusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.drain()


def measure(cases: list[Case], batches: Batches, repeats: int) -> None:
    for case in cases:  # warm-up: allocator, first hooks, first buffers
        train_steps(case, batches, 2 * BLOCK)
    for r in range(repeats):
        for case in cases[r % len(cases) :] + cases[: r % len(cases)]:
            case.ms.append(train_steps(case, batches, BLOCK))


def hook_ms_per_step(case: Case, batches: Batches, steps: int) -> float:
    """Time inside the case's hooks per step: timers hooked in just before and after them."""
    spent, marks = [0.0], [0.0]

    def start(*_: Any) -> None:
        marks[0] = time.perf_counter()

    def stop(*_: Any) -> None:
        spent[0] += time.perf_counter() - marks[0]

    handles = []
    for module in case.model.modules():
        if isinstance(module, nn.ReLU):
            handles.append(module.register_forward_hook(start, prepend=True))
            handles.append(module.register_forward_hook(stop))
    train_steps(case, batches, steps)
    for handle in handles:
        handle.remove()
    return spent[0] / steps * 1000


def report(cases: list[Case], batches: Batches, args: argparse.Namespace) -> None:
    base = cases[0].ms
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; CNN batch 64 on CPU; "
        f"{args.repeats} rounds x {BLOCK} steps per case; load average {load}"
    )
    print(f"{'case':<24}{'ms/step':>9}{'ratio':>9}{'hooks/step':>12}  goal")
    base_ms = train_steps(cases[0], batches, 5 * BLOCK)
    for case in cases:
        ms = statistics.median(case.ms)
        own = base if case.base is None else case.base.ms
        ratio = statistics.median(c / b for c, b in zip(case.ms, own, strict=True))
        hooks = f"{hook_ms_per_step(case, batches, 5 * BLOCK) / base_ms:>11.2%}"
        hooks = hooks if case.base is None else f"{'-':>11}"  # F.relu: no module to time
        goal = GOALS.get(case.name)
        verdict = "" if goal is None else f"<= {goal:.2f} {'ok' if ratio <= goal else 'MISSED'}"
        print(f"{case.name:<24}{ms:>9.3f}{ratio:>9.4f}{hooks}   {verdict}")


def unobserved_pass_us(passes: int = 20_000) -> float:
    """Extra microseconds per unobserved training pass (the root hooks' gate): a one-weight
    model with F.relu, watched with `every` larger than the passes, against the same unwatched."""
    model = OneWeight()
    x = torch.randn(1, 1)

    def per_pass(m: nn.Module) -> float:
        best = math.inf
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(passes // 5):
                m(x)
            best = min(best, (time.perf_counter() - start) / (passes // 5))
        return best * 1e6

    plain = per_pass(model)
    watched = copy.deepcopy(model)
    watched(x)  # warm
    watcher = ActivationWatcher(watched, step_of=lambda: 0, problems=Problems(), every=10**9)
    watched(x)  # the first pass is observed; the rest are not
    cost = per_pass(watched) - plain
    watcher.remove()
    return cost


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (~20 s)")
    parser.add_argument("--repeats", type=int, default=None, help=f"rounds of {BLOCK} steps")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--flush-interval", type=float, default=1.0)
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table")
    args = parser.parse_args()
    args.repeats = args.repeats or (25 if args.quick else 80)
    return args


def profile(case: Case, batches: Batches) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        train_steps(case, batches, 3 * BLOCK)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batches = [(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))) for _ in range(8)]
    base, problems = make_cnn(), Problems()
    specs: list[tuple[str, str | int | None]] = [
        ("no watch", None),
        ("no watch (A/A control)", None),
        ("naive hooks every=1", "naive"),
        ("watch every=1", 1),
        ("watch every=10", 10),
    ]
    cases = [make_case(name, base, hook, problems) for name, hook in specs]
    functional = FunctionalCnn()
    unwatched = make_case("F.relu no watch", functional, None, problems)
    cases.append(unwatched)
    for every in (1, 10):
        case = make_case(f"F.relu watch every={every}", functional, every, problems)
        case.base = unwatched
        cases.append(case)
    watchers = [case.watcher for case in cases if case.watcher is not None]
    with Flusher(watchers, args.flush_interval) as flusher:
        measure(cases, batches, args.repeats)
    report(cases, batches, args)
    print(f"unobserved pass (root hooks only): {unobserved_pass_us():+.2f} us per pass")
    print(f"rows collected by the flush thread: {flusher.rows}; problems: {problems.snapshot()}")
    if args.profile:
        profile(cases[3], batches)


if __name__ == "__main__":
    main()
