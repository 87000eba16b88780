"""Real replica runs for the reproducibility / landscape / layer-sizing views.

Two (or more) seeds of one small classifier in one `group`, each recording the same probe set's
predictions, a loss slice every few steps and watched activations; `store_surface` then runs the
real `trainlight landscape` job on a checkpoint of the first one. `make_model` and `probe_loss`
are module-level so the offline job can import them by name, as a user's would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from trainlight.collectors import Monitor
from trainlight.collectors.landscape_surface import SurfaceJob, run

FEATURES, CLASSES = 8, 3
MODEL_SPEC = "tests.support.replica_runs:make_model"
PROBE_SPEC = "tests.support.replica_runs:probe_loss"


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """The task (fixed for every replica): 256 examples, 3 classes from a random linear rule."""
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(256, FEATURES, generator=gen)
    y = (x @ torch.randn(FEATURES, CLASSES, generator=gen)).argmax(dim=1)
    return x, y


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, CLASSES)
    )


def probe_loss(model: nn.Module) -> torch.Tensor:
    x, y = data()
    return nn.functional.cross_entropy(model(x[:64]), y[:64])


def train_replica(
    store: Path, name: str, seed: int, group: str, steps: int = 60, checkpoint: Path | None = None
) -> str:
    """One replica: predictions every 10 steps, a slice every 10, activations watched."""
    torch.manual_seed(seed)
    x, y = data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    with Monitor(run=name, store=store, group=group, flush_interval=0.1) as mon:
        mon.watch(model, every=1, window=20)
        mon.landscape(model, probe_loss, every=10, points=11, span=1.0)
        for step in range(steps):
            idx = torch.randint(0, len(x), (32,))
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
            with torch.no_grad():
                mon.predictions(step, torch.softmax(model(x[64:]), dim=1), every=10)
        if checkpoint is not None:
            torch.save(model.state_dict(), checkpoint)
        return mon.run_id


def train_replicas(store: Path, seeds: Sequence[int], group: str = "replicas") -> list[str]:
    """The replicas in order; the first also saves a checkpoint and gets a 2-D surface."""
    checkpoint = store.parent / "replica.pt"
    ids = [
        train_replica(store, f"{group} seed {s}", s, group, checkpoint=None if i else checkpoint)
        for i, s in enumerate(seeds)
    ]
    job = SurfaceJob(ids[0], MODEL_SPEC, checkpoint, PROBE_SPEC, points=7, directory=str(store))
    run(job)
    return ids
