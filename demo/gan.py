"""The GAN family: a conditional generator of 1-D waveforms against an LSGAN adversary.

The generator sees the real waveform decimated 4x and must produce the full waveform: an L1
content loss pulls it toward the real one, the adversary's loss (weighted) toward realism. Both
the demo and the signal tests train this loop, instrumented only through the public Monitor API.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from trainlight.collectors import Monitor
from trainlight.demo.recipes import GanRecipe
from trainlight.demo.waveforms import waveforms

LENGTH = 64  # samples per waveform
BATCH = 64


class Generator(nn.Module):
    """Maps a conditioning signal (the real waveform, decimated) to a full waveform."""

    def __init__(self, length: int, dc_init: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(length // 4, 128), nn.ReLU(), nn.Linear(128, length))
        self.dc = nn.Parameter(torch.tensor(dc_init))

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.net(condition) + self.dc


def content_loss(fake: torch.Tensor, real: torch.Tensor, mean_blind: bool) -> torch.Tensor:
    """L1 distance; `mean_blind` first removes each sample's mean from both."""
    if mean_blind:
        fake = fake - fake.mean(1, keepdim=True)
        real = real - real.mean(1, keepdim=True)
    return (fake - real).abs().mean()


# (step, generator, adversary, real pool): how a benchmark judges a run by its own metrics
Inspect = Callable[[int, nn.Module, nn.Module, torch.Tensor], None]


def train_gan(
    mon: Monitor, recipe: GanRecipe, steps: int, seed: int, inspect: Inspect | None = None
) -> None:
    """Train for `steps` steps (fewer if `mon` asks to stop), reporting to `mon`; `inspect`, if
    given, is called after every step (bench/verdict_batch.py labels runs with it)."""
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    real_pool = waveforms(4096, LENGTH, rng)
    gen = Generator(LENGTH, recipe.dc_init)
    disc = nn.Sequential(nn.Linear(LENGTH, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
    g_opt = torch.optim.Adam(gen.parameters(), lr=2e-3)
    d_opt = (
        torch.optim.Adam(disc.parameters(), lr=recipe.adversary_lr) if recipe.adversary_lr else None
    )
    if recipe.roles:
        mon.roles(adversary="d_loss", content="content")
    mon.reference(real_pool[:1024])
    for step in range(steps):
        real = real_pool[torch.randint(0, len(real_pool), (BATCH,), generator=rng)]
        fake = gen(real[:, ::4])
        d_loss = ((disc(real) - 1) ** 2).mean() + (disc(fake.detach()) ** 2).mean()
        if d_opt is not None:
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
        content = content_loss(fake, real, recipe.mean_blind)
        g_loss = content + recipe.adversary_weight * ((disc(fake) - 1) ** 2).mean()
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
        mon.log(step, d_loss=d_loss, content=content)
        mon.outputs(step, fake)
        if inspect is not None:
            inspect(step, gen, disc, real_pool)
        if mon.should_stop():
            break
