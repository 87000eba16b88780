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

from tests.support.overfit_digits import held_out_scores
from trainlight.collectors import Monitor
from trainlight.demo.digits import load_digits_split

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
    data = load_digits_split()
    half = len(data.held_out) // 2
    val, test = data.held_out[:half], data.held_out[half:]
    train = data.train if case.train_size is None else data.train[: case.train_size]
    labels = data.labels[train].clone()
    noise = torch.Generator().manual_seed(case.seed + 1000)
    flip = torch.rand(len(labels), generator=noise) < case.label_noise
    labels[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=noise)
    model = build_cnn(case)
    opt: torch.optim.Optimizer
    if case.optimiser == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=case.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=case.lr, momentum=0.9)
    batches = torch.Generator().manual_seed(case.seed)
    test_accs = []
    kwargs = {"store": store, "flush_interval": 0.2, **(monitor or {})}
    with Monitor(run=case.name, config={"case": case.__dict__}, **kwargs) as mon:
        mon.watch(model, every=10)
        for step in range(case.steps):
            if step == case.lr_jump_at:
                for group in opt.param_groups:
                    group["lr"] = case.lr * case.lr_jump
            model.train()
            idx = torch.randint(0, len(train), (32,), generator=batches)
            loss = nn.functional.cross_entropy(model(data.images[train[idx]]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
            if step % case.eval_every == 0 or step == case.steps - 1:
                val_loss, val_acc = held_out_scores(model, data.images[val], data.labels[val])
                mon.log(step, val_loss=val_loss, val_acc=val_acc)
                test_accs.append(held_out_scores(model, data.images[test], data.labels[test])[1])
        return CnnResult(mon.run_id, max(test_accs), test_accs[-1])
