"""Small real trainings for the signal tests: each is a few seconds of CPU, fully seeded.

Nothing here scripts a signal: the health verdicts come from what the training does.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from trainlight.collectors import Monitor

FAST_HEALTH = {
    "catch_window": 50,
    "baseline_windows": 2,
    "catch_patience": 200,
    "plateau_rho": 0.02,
    "runaway_patience": 100,
    "confirm": 2,
}


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
    with Monitor(run=name, store=store, health=FAST_HEALTH, flush_interval=0.1) as mon:
        mon.watch(model, every=1, window=512)
        for step in range(steps):
            idx = torch.randint(0, len(x), (64,), generator=generator)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
        return mon.run_id


def waveforms(n: int, length: int, generator: torch.Generator, dc_std: float = 0.1) -> torch.Tensor:
    """Mixtures of two tones with noise and a per-sample DC offset: generated 1-D "audio"."""
    t = torch.linspace(0, 1, length)
    freq = torch.randint(2, 12, (n, 2), generator=generator).float()
    phase = torch.rand(n, 2, generator=generator) * 2 * math.pi
    tones = torch.sin(2 * math.pi * freq[:, :, None] * t + phase[:, :, None]).sum(1) * 0.5
    dc = torch.randn(n, 1, generator=generator) * dc_std
    return tones + dc + 0.05 * torch.randn(n, length, generator=generator)


class Generator(nn.Module):
    """Maps a conditioning signal (the real waveform, decimated) to a full waveform."""

    def __init__(self, length: int, dc_init: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(length // 4, 128), nn.ReLU(), nn.Linear(128, length))
        self.dc = nn.Parameter(torch.tensor(dc_init))

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.net(condition) + self.dc


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
) -> str:
    """A conditional GAN on waveforms: content (L1) + LSGAN adversary.

    `adversary_lr=0` freezes the adversary (it never catches). With `mean_blind` the content
    loss ignores each sample's mean, and with `adversary_weight=0` the generator ignores the
    adversary too: nothing pulls a DC offset back, so it stays wherever it ran off to.
    """
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    length = 64
    real_pool = waveforms(4096, length, generator)
    gen = Generator(length, dc_init)
    disc = nn.Sequential(nn.Linear(length, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
    g_opt = torch.optim.Adam(gen.parameters(), lr=2e-3)
    d_opt = torch.optim.Adam(disc.parameters(), lr=adversary_lr) if adversary_lr else None
    with Monitor(run=name, store=store, health=FAST_HEALTH, flush_interval=0.1) as mon:
        if roles:
            mon.roles(adversary="d_loss", content="content")
        mon.reference(real_pool[:1024])
        for step in range(steps):
            real = real_pool[torch.randint(0, len(real_pool), (64,), generator=generator)]
            fake = gen(real[:, ::4])
            d_loss = ((disc(real) - 1) ** 2).mean() + (disc(fake.detach()) ** 2).mean()
            if d_opt is not None:
                d_opt.zero_grad()
                d_loss.backward()
                d_opt.step()
            if mean_blind:
                content = (
                    (fake - fake.mean(1, keepdim=True) - real + real.mean(1, keepdim=True))
                    .abs()
                    .mean()
                )
            else:
                content = (fake - real).abs().mean()
            g_loss = content + adversary_weight * ((disc(fake) - 1) ** 2).mean()
            g_opt.zero_grad()
            g_loss.backward()
            g_opt.step()
            mon.log(step, d_loss=d_loss, content=content)
            mon.outputs(step, fake)
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
