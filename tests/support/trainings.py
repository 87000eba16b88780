"""Small real trainings for the signal tests: each is a few seconds of CPU, fully seeded.

Nothing here scripts a signal: the health verdicts come from what the training does. The GAN is
the demo's own (trainlight.demo.gan), so the tests and `trainlight demo` train the same loop.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainlight.collectors import Monitor
from trainlight.demo import gan
from trainlight.demo.recipes import GanRecipe


def blobs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A 10-class Gaussian-blob classification task in 32 dimensions."""
    centres = torch.randn(10, 32, generator=generator) * 2
    labels = torch.randint(0, 10, (n,), generator=generator)
    return centres[labels] + torch.randn(n, 32, generator=generator), labels


def train_mlp(
    store: Path, name: str, *, hidden_bias: float = 0.0, lr: float = 0.05, steps: int = 200
) -> str:
    """An MLP classifier; a large negative hidden bias kills its first ReLU layer."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x, y = blobs(4096, generator)
    model = nn.Sequential(
        nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    with torch.no_grad():
        model[0].bias.fill_(hidden_bias)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with Monitor(run=name, store=store, flush_interval=0.1) as mon:
        mon.watch(model, every=1, window=512)
        for step in range(steps):
            idx = torch.randint(0, len(x), (64,), generator=generator)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
        return mon.run_id


def train_gan(
    store: Path,
    name: str,
    *,
    adversary_lr: float = 2e-3,
    dc_init: float = 0.0,
    mean_blind: bool = False,
    adversary_weight: float = 0.05,
    steps: int = 900,
    roles: bool = True,
    declare_length: bool = True,
) -> str:
    """The demo's conditional GAN on generated waveforms (trainlight.demo.gan), seed 1.

    `adversary_lr=0` freezes the adversary (it never catches). With `mean_blind` the content
    loss ignores each sample's mean, and with `adversary_weight=0` the generator ignores the
    adversary too: nothing pulls a DC offset back, so it stays wherever it ran off to. The
    health settings are the defaults; `declare_length` passes `total_steps` to the Monitor.
    """
    recipe = GanRecipe(
        adversary_lr=adversary_lr,
        adversary_weight=adversary_weight,
        dc_init=dc_init,
        mean_blind=mean_blind,
        roles=roles,
    )
    total = steps if declare_length else None
    with Monitor(run=name, store=store, total_steps=total, flush_interval=0.1) as mon:
        gan.train_gan(mon, recipe, steps=steps, seed=1)
        return mon.run_id


def train_diverging(store: Path, name: str, steps: int = 300) -> str:
    """Linear regression with a learning rate far too large: the loss overflows to Inf/NaN."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(512, 16, generator=generator) * 10
    y = x @ torch.randn(16, 1, generator=generator)
    model = nn.Linear(16, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with Monitor(run=name, store=store, flush_interval=0.1) as mon:
        for step in range(steps):
            loss = ((model(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
        return mon.run_id


def train_lca_cnn(store: Path, name: str, steps: int = 80, every: int = 2) -> str:
    """A small CNN on 8x8 blob images, its activations watched and LCA measured every `every`
    steps (SGD with momentum)."""
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    x, y = blobs(512, generator)
    images = x[:, :16].reshape(-1, 1, 4, 4).repeat_interleave(2, -1).repeat_interleave(2, -2)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 64, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    probe_x, probe_y = images[:64], y[:64]
    health = {"lca_window": 3}
    with Monitor(run=name, store=store, health=health, flush_interval=0.05) as mon:
        mon.watch(model, every=1, window=128)
        lca = mon.lca(
            model, lambda m: nn.functional.cross_entropy(m(probe_x), probe_y), every=every
        )
        for step in range(steps):
            idx = torch.randint(0, len(images), (32,), generator=generator)
            loss = nn.functional.cross_entropy(model(images[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            with lca.measure(step):
                opt.step()
            mon.log(step, loss=loss)
        return mon.run_id
