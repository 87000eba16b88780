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

from trainlight.collectors import Monitor
from trainlight.demo.digits import load_digits_split

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
    data = load_digits_split()
    half = len(data.held_out) // 2
    val, test = data.held_out[:half], data.held_out[half:]
    train = data.train[: case.train_size]
    labels = data.labels[train].clone()
    noise = torch.Generator().manual_seed(1)
    flip = torch.rand(len(labels), generator=noise) < case.label_noise
    labels[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=noise)
    torch.manual_seed(case.seed)
    model = _wide_mlp(case.width, case.dropout)
    opt = torch.optim.SGD(
        model.parameters(), lr=case.lr, momentum=0.9, weight_decay=case.weight_decay
    )
    batches = torch.Generator().manual_seed(case.seed)
    test_accs = []
    kwargs = {"store": store, "flush_interval": 0.2, **(monitor or {})}
    with Monitor(run=case.name, config={"case": case.__dict__}, **kwargs) as mon:
        for step in range(case.steps):
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
        return OverfitResult(mon.run_id, max(test_accs), test_accs[-1])


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


@torch.no_grad()
def held_out_scores(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """(cross-entropy, accuracy) of the model on held-out digits, in eval mode."""
    model.eval()
    logits = model(images)
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()
