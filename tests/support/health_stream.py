"""A seeded stream of rows that exercises every built-in rule window, for state round trips.

A GAN-like run (adversary/content roles, runaway readings), watched layers (dead fractions,
undead counts), LCA measurements and, late, a NaN: cut into segments the same way every time.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from tests.support.segments import rows_table

ROLES = {"adversary": "d_loss", "content": "g_loss"}
STEPS = 400


def health_segments(seed: int = 7, cut: int = 37) -> list[pa.Table]:
    """The stream in segments of `cut` steps."""
    rng = np.random.default_rng(seed)
    metrics: list[tuple[int, str, float]] = []
    layers: list[tuple[int, str, str, float]] = []
    for step in range(STEPS):
        content = 2.0 * math.exp(-step / 60) + 0.3 + 0.02 * rng.normal()
        adversary = 0.7 + (0.002 * (step - 250) if step > 250 else 0.0) + 0.03 * rng.normal()
        metrics += [(step, "g_loss", content), (step, "d_loss", adversary)]
        metrics.append((step, "loss", math.nan if step == 390 else content))
        if step % 5 == 0:
            distance = 0.5 * math.exp(-step / 150) + 0.05 * abs(rng.normal())
            metrics += [
                (step, "runaway/distance", distance),
                (step, "runaway/critical", 0.2),
                (step, "runaway/effect", distance * 2),
            ]
            for layer in ("fc1", "fc2"):
                layers.append((step, layer, "dead_frac", float(rng.uniform(0.0, 0.3))))
                layers.append((step, layer, "undead", float(rng.poisson(2 if step != 200 else 30))))
        if step % 10 == 0:
            per_layer = {layer: float(rng.normal(-0.01, 0.02)) for layer in ("fc1", "fc2")}
            metrics.append((step, "lca/total", sum(per_layer.values())))
            layers += [(step, layer, "lca", value) for layer, value in per_layer.items()]
    segments = []
    for low in range(0, STEPS, cut):
        high = low + cut
        segments.append(
            rows_table(
                [m for m in metrics if low <= m[0] < high],
                [r for r in layers if low <= r[0] < high],
            )
        )
    return segments
