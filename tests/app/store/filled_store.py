"""A store filled by real Monitor runs through the real Ingester, shared by the store tests.

Three runs: a small watched MLP with LCA (`lca`), a conditional GAN with roles, a reference and
outputs (`gan`), and a long scalar-only run with a spike, a NaN and a +Inf (`long`).
"""

from __future__ import annotations

import math
from pathlib import Path

from tests.support.dashboard_runs import train_lca_mlp
from tests.support.trainings import train_gan
from trainlight.collectors import Monitor

LONG_STEPS = 20_000
SPIKE_STEP, NAN_STEP, INF_STEP = 12_345, 7_000, 15_000


def log_long_run(store: Path) -> str:
    """A long scalar-only run: a smooth curve with one spike, one NaN and one +Inf."""
    with Monitor(run="long", store=store, flush_interval=0.2) as mon:
        for step in range(LONG_STEPS):
            value = math.sin(step / 1000)
            if step == SPIKE_STEP:
                value = 50.0
            elif step == NAN_STEP:
                value = math.nan
            elif step == INF_STEP:
                value = math.inf
            mon.log(step, wave=value)
        return mon.run_id


def fill(root: Path) -> dict[str, str]:
    """Write the three runs into the store at `root` (not yet ingested); their ids by role."""
    return {
        "lca": train_lca_mlp(root, "lca-mlp"),
        "gan": train_gan(root, "gan", steps=600),
        "long": log_long_run(root),
    }
