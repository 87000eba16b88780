"""Two small real trainings instrumented with trainlight, written to ./trainlight-runs.

A 2-layer MLP learns a generated two-spirals classification task. One run uses a sane learning
rate; the other a far too large one, which kills its ReLUs. Then `trainlight serve` shows both.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from trainlight.collectors import Monitor


def spirals(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.rand(n, generator=generator) * 3 * math.pi
    label = torch.randint(0, 2, (n,), generator=generator)
    sign = label.float() * 2 - 1
    x = torch.stack([sign * t * torch.cos(t), sign * t * torch.sin(t)], dim=1) / 10
    return x + 0.02 * torch.randn(n, 2, generator=generator), label


def train(lr: float, steps: int, store: str | None) -> None:
    generator = torch.Generator().manual_seed(0)
    x, y = spirals(2048, generator)
    model = nn.Sequential(
        nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)
    )
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with Monitor(
        run=f"spirals lr={lr}",
        project="quickstart",
        store=store,
        group="lr-sweep",
        tags=["mlp"],
        config={"lr": lr, "steps": steps},
    ) as mon:
        mon.watch(model, every=5, window=1024)  # dead ReLUs, activation variance, NaN/Inf
        for step in range(steps):
            idx = torch.randint(0, len(x), (128,), generator=generator)
            logits = model(x[idx])
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            acc = (logits.argmax(1) == y[idx]).float().mean()
            mon.log(step, loss=loss, acc=acc)  # 0-d tensors: no sync here
            if mon.should_stop():
                break
    print(f"{mon.run_id}: {step + 1} steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--dir", default=None, help="store directory (default ./trainlight-runs)")
    args = parser.parse_args()
    for lr in (0.05, 50.0):
        train(lr, args.steps, args.dir)


if __name__ == "__main__":
    main()
