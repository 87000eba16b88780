"""Small CNNs on scikit-learn's bundled digits: the held-out family no default was tuned on.

`depth` 3x3 convolutions of `channels` each (a 2x2 max-pool after the second), `activation`
"relu", "tanh" or "sigmoid", `init_std` as in deep_mlp.py (None: PyTorch's default init), Adam or
SGD with momentum. `label_noise` replaces that fraction of the `train_size` training labels with
random classes (memorised by a net with no regularisation); `lr_jump_at` multiplies the learning
rate by `lr_jump` from that step on (a schedule with a typo). Instrumented exactly as a user
would: `Monitor`, `watch(every=10)`, `log(loss=...)`, the validation loss and accuracy every
`eval_every` steps.

The held-out digits are cut in two: the validation half is logged, the test half never is and
gives the label. A run is doomed when its test accuracy ends under `DOOMED_BELOW` (it learned
nothing, or unlearned) or `DOOMED_DROP` or more under the best it reached (training on made it
worse): final quality only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tests.support.scored_digits import Plan, train_scored

DOOMED_BELOW = 0.5
DOOMED_DROP = 0.03


@dataclass(frozen=True)
class CnnCase:
    name: str
    activation: str = "relu"
    depth: int = 4
    channels: int = 16
    init_std: float | None = None
    optimiser: str = "adam"
    lr: float = 1e-3
    label_noise: float = 0.0
    train_size: int | None = None  # None: every training digit
    lr_jump_at: int | None = None
    lr_jump: float = 100.0
    steps: int = 600
    eval_every: int = 50
    seed: int = 0


@dataclass(frozen=True)
class CnnResult:
    run_id: str
    best_test_acc: float
    final_test_acc: float

    @property
    def doomed(self) -> bool:
        return (
            self.final_test_acc < DOOMED_BELOW
            or self.final_test_acc <= self.best_test_acc - DOOMED_DROP
        )


def build_cnn(case: CnnCase) -> nn.Sequential:
    torch.manual_seed(case.seed)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[case.activation]
    layers: list[nn.Module] = []
    channels_in = 1
    for i in range(case.depth):
        conv = nn.Conv2d(channels_in, case.channels, 3, padding=1)
        if case.init_std is not None:
            nn.init.normal_(conv.weight, std=case.init_std)
            nn.init.zeros_(conv.bias)
        layers += [conv, act()]
        if i == 1:
            layers.append(nn.MaxPool2d(2))
        channels_in = case.channels
    side = 4 if case.depth >= 2 else 8
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(case.channels * side * side, 10))


def train_cnn(
    store: Path | str | None, case: CnnCase, monitor: dict[str, Any] | None = None
) -> CnnResult:
    model = build_cnn(case)
    opt: torch.optim.Optimizer
    if case.optimiser == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=case.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=case.lr, momentum=0.9)
    plan = Plan(
        steps=case.steps,
        eval_every=case.eval_every,
        seed=case.seed,
        train_size=case.train_size,
        label_noise=case.label_noise,
        noise_seed=case.seed + 1000,
        watch_every=10,
        lr_jump_at=case.lr_jump_at,
        lr_jump=case.lr_jump,
    )
    run = train_scored(store, case.name, {"case": case.__dict__}, model, opt, plan, monitor)
    return CnnResult(run.run_id, run.best_test_acc, run.final_test_acc)
