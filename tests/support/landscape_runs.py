"""A short real training that records loss-surface slices and saves a checkpoint, for the tests
of `trainlight landscape` against what the run recorded.

`factory` and `probe_loss` are importable by name (`tests.support.landscape_runs:factory`), as
the command needs them; the network has a BatchNorm (1-d parameters and running statistics) and a
dropout (the probe runs in eval mode) so the checkpoint carries more than weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainlight.collectors import Monitor

MODEL_SPEC = "tests.support.landscape_runs:factory"
PROBE_SPEC = "tests.support.landscape_runs:probe_loss"


def factory() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(6 * 4 * 4, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


def batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is a function of two pixel sums: learnable, so the weights grow."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=generator)
    y = (x[:, 0, 1:4, 1:4].sum((1, 2)) > 0).long() + (x[:, 0, 0, :3].sum(1) > 1).long()
    return x, y


def probe_loss(model: nn.Module) -> torch.Tensor:
    x, y = batch(64, seed=100)
    return nn.functional.cross_entropy(model(x), y)


@dataclass(frozen=True)
class SliceSetup:
    seed: int = 5
    span: float = 0.7
    points: int = 7
    every: int = 10


def train_with_slices(
    store: Path, checkpoint: Path, checkpoint_step: int, setup: SliceSetup, steps: int = 40
) -> str:
    """Train with `mon.landscape(...)`; save the state_dict right after `log(checkpoint_step)`
    (the weights that step's slice saw). Returns the run id."""
    torch.manual_seed(0)
    model = factory()
    x, y = batch(512, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    with Monitor(run="landscape", store=store, flush_interval=0.1) as mon:
        mon.landscape(
            model,
            probe_loss,
            every=setup.every,
            points=setup.points,
            span=setup.span,
            seed=setup.seed,
        )
        for step in range(steps):
            idx = torch.randint(0, len(x), (64,))
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
            if step == checkpoint_step:
                torch.save(model.state_dict(), checkpoint)
        return mon.run_id
