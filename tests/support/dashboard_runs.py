"""Real runs for the dashboard tests: written by Monitor, ingested by the real Ingester.

`train_lca_mlp` exercises every per-layer table at once (dead/undead from `watch`, LCA rows and
heatmap frames from `lca`), so one short run fills the whole run page.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors import Monitor
from trainlight.collectors.schema import StoreLayout


def train_lca_mlp(store: Path, name: str, steps: int = 120, every: int = 2) -> str:
    """A small classifier with activations watched and LCA measured every `every` steps."""
    torch.manual_seed(0)
    x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    model = nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    probe_x, probe_y = x[:64], y[:64]
    health = {"lca_window": 3, "confirm": 1}
    with Monitor(
        run=name, store=store, health=health, config={"lr": 0.1, "steps": steps}, flush_interval=0.1
    ) as mon:
        mon.watch(model, every=1, window=64)
        lca = mon.lca(
            model,
            lambda m: nn.functional.cross_entropy(m(probe_x), probe_y),
            every=every,
            max_frames=16,
        )
        for step in range(steps):
            idx = torch.randint(0, 256, (32,))
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            with lca.measure(step):
                opt.step()
            mon.log(step, loss=loss, lr=0.1)
        return mon.run_id


def ingest(store_dir: Path) -> Store:
    """Open the store and ingest everything pending (the caller closes it)."""
    store = Store(StoreLayout.resolve(store_dir))
    Ingester(store).ingest_pending()
    return store
