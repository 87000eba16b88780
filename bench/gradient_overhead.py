"""Step-time and memory cost of `watch`'s gradient norms and update ratios, same run.

Why (issue 15): `mon.watch(model, every=10)` now also measures each layer's gradient norm and
update/weight ratio on its observed steps; the promise is <= 1.02x the unwatched step at
every=10 on a small CNN and a small transformer, with every=1 reported, and at most one copy of
the watched parameters held, only during an observed step.

Models (CPU, full training steps: forward, backward, AdamW step): the CNN of
bench/watch_overhead.py (batch 64, 1x28x28 generated data) and pytorch/examples'
TransformerModel (tests/support/word_language_model.py; 2 layers, d=64, sequence 48, batch 16,
a 96-symbol vocabulary). Identical copies are timed in blocks of 10 steps, interleaved block by
block in rotating order: unwatched (and an unwatched A/A copy: the noise floor),
`GradientWatcher` every=10 and every=1, and the full `watch` (activations + gradients) every=10.
Printed: the median over rounds of each case's block time / the unwatched block of the same
round; the time spent inside the gradient hooks per observed step (timers around each hook:
the direct cost, free of the noise floor); and the peak bytes of parameter copies held (against
the parameters' own bytes).

    python bench/gradient_overhead.py            # ~90 s
    python bench/gradient_overhead.py --quick    # ~30 s
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.watch_overhead import make_cnn
from tests.support.word_language_model import TransformerModel
from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.activations import ActivationWatcher
from trainlight.collectors.signals.gradients import GradientWatcher

BLOCK = 10  # steps per timed block: each holds one observed step at every=10
VOCAB, SEQ, BATCH = 96, 48, 16


@dataclass
class Case:
    name: str
    model: nn.Module
    opt: torch.optim.Optimizer
    sources: list[Any]
    times: list[float]


class TimedWatcher(GradientWatcher):
    """The watcher with a clock around each hook: the direct cost, free of the noise floor."""

    spent = 0.0

    def _timed(self, method: Callable[..., None], *args: Any) -> None:
        start = time.perf_counter()
        method(*args)
        self.spent += time.perf_counter() - start

    def _forward_starts(self, *args: Any) -> None:
        self._timed(super()._forward_starts, *args)

    def _before_update(self, *args: Any) -> None:
        self._timed(super()._before_update, *args)

    def _after_update(self, *args: Any) -> None:
        self._timed(super()._after_update, *args)


def direct_cost(base: nn.Module, loss_of: Any, steps: int) -> float:
    """Milliseconds spent inside the gradient hooks per observed step (every=1)."""
    case = make_case("timed", base, None, 1)
    watcher = TimedWatcher(case.model, step_of=lambda: 0, problems=Problems(), every=1)
    case.sources.append(watcher)
    for _ in range(steps // BLOCK):
        block(case, loss_of)
    return watcher.spent / steps * 1000


def transformer() -> nn.Module:
    return TransformerModel(VOCAB, 64, 2, 128, 2, dropout=0.0)


def cnn_loss(model: nn.Module, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(64, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (64,), generator=gen)
    return nn.functional.cross_entropy(model(x), y)


def lm_loss(model: nn.Module, gen: torch.Generator) -> torch.Tensor:
    ids = torch.randint(0, VOCAB, (SEQ + 1, BATCH), generator=gen)
    out = model(ids[:-1])
    return nn.functional.nll_loss(out.reshape(-1, VOCAB), ids[1:].reshape(-1))


def make_case(name: str, base: nn.Module, watch: str | None, every: int) -> Case:
    model = copy.deepcopy(base)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sources: list[Any] = []
    problems = Problems()
    if watch in ("gradients", "full"):
        sources.append(GradientWatcher(model, step_of=lambda: 0, problems=problems, every=every))
    if watch == "full":
        sources.append(
            ActivationWatcher(model, step_of=lambda: 0, problems=problems, every=every, unit_dim=-1)
        )
    return Case(name, model, opt, sources, [])


def block(case: Case, loss_of: Callable[[nn.Module, torch.Generator], torch.Tensor]) -> float:
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(BLOCK):
        loss = loss_of(case.model, gen)
        case.opt.zero_grad()
        loss.backward()
        case.opt.step()
    elapsed = time.perf_counter() - start
    for source in case.sources:
        source.collect()  # what the flush thread does
    return elapsed


def measure(title: str, base: nn.Module, loss_of: Any, rounds: int) -> None:
    cases = [
        make_case("unwatched", base, None, 1),
        make_case("unwatched A/A", base, None, 1),
        make_case("gradients every=10", base, "gradients", 10),
        make_case("gradients every=1", base, "gradients", 1),
        make_case("watch every=10 (activations + gradients)", base, "full", 10),
    ]
    for case in cases:  # warm-up
        block(case, loss_of)
    for r in range(rounds):
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        for case in order:
            case.times.append(block(case, loss_of))
    bare = cases[0].times
    param_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    print(f"\n{title}: unwatched step {statistics.median(bare) / BLOCK * 1000:.2f} ms")
    for case in cases[1:]:
        ratio = statistics.median(t / b for t, b in zip(case.times, bare, strict=True))
        print(f"  {case.name:42} {ratio:.3f}x")
    grads = cases[3].sources[0]
    hooks_ms = direct_cost(base, loss_of, 100)
    step_ms = statistics.median(bare) / BLOCK * 1000
    print(
        f"  inside the gradient hooks: {hooks_ms:.3f} ms per observed step = "
        f"{hooks_ms / step_ms:.1%} of a step at every=1, {hooks_ms / step_ms / 10:.2%} at "
        "every=10 (the direct cost)"
    )
    print(
        f"  parameter copy held at peak: {grads.peak_copy_bytes / 1e6:.2f} MB "
        f"(the parameters: {param_bytes / 1e6:.2f} MB), none between observed steps"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per step, as a loaded training machine gives
    torch.manual_seed(0)
    rounds = 10 if args.quick else 30
    print(f"load average {os.getloadavg()[0]:.2f}; {rounds} rounds of {BLOCK}-step blocks")
    measure("small CNN", make_cnn(), cnn_loss, rounds)
    measure("small transformer LM", transformer(), lm_loss, rounds)


if __name__ == "__main__":
    main()
