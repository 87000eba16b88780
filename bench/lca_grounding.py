"""Is LCA grounded at its defaults? The old defaults against the new, on real digit trainings.

Why: "grounded" is LCA's defining property, ΣA = ΔL; the residual ΔL − ΣA is the quadrature's
error. The old defaults (abs_tol=1e-3, max_intervals=32) accepted any residual below 1e-3, about
the size of a step's |ΔL|, so on ReLU nets (kinks along the path) refinement never started. The
new defaults (1% of |ΔL|, floored at the probe loss's resolution, up to 64 intervals) refine
until the residual is within 1%.

Three trainings on scikit-learn's bundled digits (the demo's split and probe batch of 256
training digits), SGD with momentum 0.9, batch 64, every step measured, two seeds each: a ReLU
MLP (64-64-64-10), a Tanh MLP, and a CNN with BatchNorm (conv-BN-ReLU twice, a linear head).
Both allocators measure the SAME steps of one training (nested `measure` blocks; the probe
never changes the training), so the comparison is paired. Each one's time per measured step is
what its block adds (the nesting order alternates per step, so neither is always outside).

Printed per model and setting: the share of measured steps with |ΔL − ΣA| ≤ 1%·|ΔL|, the
median and worst |ΔL − ΣA|/|ΔL|, probe passes per measured step, ms per measured step, the
new/old time ratio, and the histogram of the intervals used.

    python bench/lca_grounding.py            # about 2 min on an idle 2-core CPU
    python bench/lca_grounding.py --quick    # 100 steps, one seed: about 10 s
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.lca import LossChangeAllocator
from trainlight.demo.digits import PROBE_SIZE, load_digits_split

OLD = {"abs_tol": 1e-3, "rel_tol": 0.01, "max_intervals": 32}  # the defaults before issue 12
NEW: dict[str, float | int | None] = {}  # today's defaults


def relu_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )


def tanh_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)
    )


def bn_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


MODELS: dict[str, tuple[Callable[[], nn.Module], float]] = {  # builder, learning rate
    "ReLU MLP": (relu_mlp, 0.05),
    "Tanh MLP": (tanh_mlp, 0.05),
    "BN CNN": (bn_cnn, 0.02),
}


@dataclass
class Tally:
    errors: list[float] = field(default_factory=list)  # |ΔL − ΣA| / |ΔL| per measured step
    passes: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    intervals: collections.Counter[int] = field(default_factory=collections.Counter)

    def add(self, lca: LossChangeAllocator, seconds: float) -> None:
        result = lca.last
        assert result is not None
        self.errors.append(abs(result.residual) / abs(result.actual) if result.actual else 0.0)
        self.passes.append(result.evaluations)
        self.seconds.append(seconds)
        self.intervals[result.intervals] += 1


@contextmanager
def timer(into: list[float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    into.append(time.perf_counter() - start)


def train(name: str, seed: int, steps: int, tallies: dict[str, Tally]) -> None:
    """One training with both allocators measuring every step."""
    build, lr = MODELS[name]
    data = load_digits_split()
    probe_x, probe_y = data.images[data.train[:PROBE_SIZE]], data.labels[data.train[:PROBE_SIZE]]
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    lcas = {
        label: LossChangeAllocator(
            model,
            lambda m: F.cross_entropy(m(probe_x), probe_y),
            every=1,
            problems=Problems(),
            **settings,  # type: ignore[arg-type]
        )
        for label, settings in (("old", OLD), ("new", NEW))
    }
    for step in range(steps):
        idx = data.train[torch.randint(0, len(data.train), (64,), generator=gen)]
        opt.zero_grad()
        F.cross_entropy(model(data.images[idx]), data.labels[idx]).backward()
        order = ["old", "new"] if step % 2 else ["new", "old"]
        spans: dict[str, list[float]] = {"old": [], "new": [], "step": []}
        with ExitStack() as stack:
            for label in order:
                stack.enter_context(timer(spans[label]))
                stack.enter_context(lcas[label].measure(step))
            stack.enter_context(timer(spans["step"]))
            opt.step()
        inner, outer = order[1], order[0]
        own = {inner: spans[inner][0] - spans["step"][0]}
        own[outer] = spans[outer][0] - spans[inner][0]
        for label, lca in lcas.items():
            tallies[label].add(lca, own[label])
            lca.collect()


def report(name: str, tallies: dict[str, Tally]) -> None:
    print(f"{name}:")
    for label, tally in tallies.items():
        errors = tally.errors
        share = sum(e <= 0.01 for e in errors) / len(errors)
        hist = ", ".join(f"{n}: {c}" for n, c in sorted(tally.intervals.items()))
        print(
            f"  {label:3s} grounded within 1%: {share:7.2%} of {len(errors)}   "
            f"error median {statistics.median(errors):.1e}, worst {max(errors):.1e}   "
            f"passes/step {statistics.mean(tally.passes):.2f}   "
            f"{statistics.median(tally.seconds) * 1e3:6.2f} ms/step (median), "
            f"{statistics.mean(tally.seconds) * 1e3:6.2f} mean   intervals {{{hist}}}"
        )
    old, new = tallies["old"].seconds, tallies["new"].seconds
    print(
        f"  new / old time per measured step: {statistics.mean(new) / statistics.mean(old):.2f}x "
        f"(mean), {statistics.median(new) / statistics.median(old):.2f}x (median)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="--steps 100 --seeds 1")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.seeds = 100, 1
    torch.set_num_threads(1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, CPU, 1 thread, {args.steps} steps x {args.seeds} seeds, "
        f"every step measured, load average {load:.2f}"
    )
    print(f"old: {OLD}; new: the defaults (rel_tol=0.01, floor 8 eps |L|, max_intervals=128)")
    for name in args.models:
        tallies = {"old": Tally(), "new": Tally()}
        for seed in range(args.seeds):
            train(name, seed, args.steps, tallies)
        report(name, tallies)


if __name__ == "__main__":
    main()
