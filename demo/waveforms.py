"""Generated 1-D "audio" for the GAN family: nothing to download, the same every run.

Each waveform is a mixture of two tones with noise and a per-sample DC offset drawn from a
normal distribution: the DC offsets' distribution is what the `runaway` signal compares the
generator's per-sample means against.
"""

from __future__ import annotations

import math

import torch


def waveforms(n: int, length: int, generator: torch.Generator, dc_std: float = 0.1) -> torch.Tensor:
    """`n` waveforms of `length` samples: two tones, noise and a per-sample DC offset."""
    t = torch.linspace(0, 1, length)
    freq = torch.randint(2, 12, (n, 2), generator=generator).float()
    phase = torch.rand(n, 2, generator=generator) * 2 * math.pi
    tones = torch.sin(2 * math.pi * freq[:, :, None] * t + phase[:, :, None]).sum(1) * 0.5
    dc = torch.randn(n, 1, generator=generator) * dc_std
    return tones + dc + 0.05 * torch.randn(n, length, generator=generator)
