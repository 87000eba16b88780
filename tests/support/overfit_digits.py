"""Wide MLPs on a few of scikit-learn's bundled digits: the runs that overfit, or look as if.

The held-out digits are cut in two: the validation half is what the run logs (`val_loss`,
`val_acc`, every `eval_every` steps), the test half is never shown to trainlight and gives the
label. A run is doomed when its test accuracy at the end is `DOOMED_DROP` or more under the best
it reached during the run (training on made it worse); labels come from that alone.

`label_noise` replaces that fraction of the training labels with random classes (fixed per
`train_size`): a wide network memorises them and its accuracy falls, the overfitting that costs
quality. On clean labels the validation loss of the same network also rises (it grows confident
on the digits it gets wrong) while its accuracy holds: scary, not doomed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tests.support.scored_digits import Plan, train_scored

DOOMED_DROP = 0.03  # test accuracy lost from the run's best to its end that marks it doomed


@dataclass(frozen=True)
class OverfitCase:
    name: str
    label_noise: float = 0.0
    weight_decay: float = 0.0
    dropout: float = 0.0
    width: int = 512
    train_size: int = 150
    lr: float = 0.05
    steps: int = 1500
    eval_every: int = 50
    seed: int = 0


@dataclass(frozen=True)
class OverfitResult:
    run_id: str
    best_test_acc: float
    final_test_acc: float

    @property
    def doomed(self) -> bool:
        return self.final_test_acc <= self.best_test_acc - DOOMED_DROP


def train_overfit(
    store: Path | str | None, case: OverfitCase, monitor: dict[str, Any] | None = None
) -> OverfitResult:
    torch.manual_seed(case.seed)
    model = _wide_mlp(case.width, case.dropout)
    opt = torch.optim.SGD(
        model.parameters(), lr=case.lr, momentum=0.9, weight_decay=case.weight_decay
    )
    plan = Plan(
        steps=case.steps,
        eval_every=case.eval_every,
        seed=case.seed,
        train_size=case.train_size,
        label_noise=case.label_noise,
        noise_seed=1,  # the same noisy labels for every seed of a train_size
    )
    run = train_scored(store, case.name, {"case": case.__dict__}, model, opt, plan, monitor)
    return OverfitResult(run.run_id, run.best_test_acc, run.final_test_acc)


def _wide_mlp(width: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, width),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(width, 10),
    )
