"""A classifier trained on scikit-learn's bundled digits as a user instruments one, and scored on
digits trainlight never sees: the loop the labelled batches of wide MLPs (overfit_digits.py) and
CNNs (digits_cnn.py) share.

The held-out digits are cut in two: the validation half is what the run logs (`val_loss`,
`val_acc`, every `eval_every` steps), the test half is never shown to trainlight and gives the
label (each family's `doomed` rule reads the best and the final test accuracy). `label_noise`
replaces that fraction of the first `train_size` training labels with random classes;
`lr_jump_at` multiplies the learning rate by `lr_jump` from that step on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlight.collectors import Monitor
from trainlight.demo.digits import load_digits_split

BATCH = 32


@dataclass(frozen=True)
class Plan:
    steps: int
    eval_every: int
    seed: int  # the batches' order
    train_size: int | None  # None: every training digit
    label_noise: float
    noise_seed: int
    watch_every: int | None = None  # None: no `mon.watch`
    lr_jump_at: int | None = None
    lr_jump: float = 1.0


@dataclass(frozen=True)
class ScoredRun:
    run_id: str
    best_test_acc: float
    final_test_acc: float


def train_scored(
    store: Path | str | None,
    name: str,
    config: dict[str, Any],
    model: nn.Module,
    opt: torch.optim.Optimizer,
    plan: Plan,
    monitor: dict[str, Any] | None = None,
) -> ScoredRun:
    data = load_digits_split()
    half = len(data.held_out) // 2
    val, test = data.held_out[:half], data.held_out[half:]
    train = data.train if plan.train_size is None else data.train[: plan.train_size]
    labels = data.labels[train].clone()
    noise = torch.Generator().manual_seed(plan.noise_seed)
    flip = torch.rand(len(labels), generator=noise) < plan.label_noise
    labels[flip] = torch.randint(0, 10, (int(flip.sum()),), generator=noise)
    batches = torch.Generator().manual_seed(plan.seed)
    test_accs = []
    kwargs = {"store": store, "flush_interval": 0.2, **(monitor or {})}
    with Monitor(run=name, config=config, **kwargs) as mon:
        if plan.watch_every:
            mon.watch(model, every=plan.watch_every)
        for step in range(plan.steps):
            if step == plan.lr_jump_at:
                for group in opt.param_groups:
                    group["lr"] *= plan.lr_jump
            model.train()
            idx = torch.randint(0, len(train), (BATCH,), generator=batches)
            loss = nn.functional.cross_entropy(model(data.images[train[idx]]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
            if step % plan.eval_every == 0 or step == plan.steps - 1:
                val_loss, val_acc = held_out_scores(model, data.images[val], data.labels[val])
                mon.log(step, val_loss=val_loss, val_acc=val_acc)
                test_accs.append(held_out_scores(model, data.images[test], data.labels[test])[1])
        return ScoredRun(mon.run_id, max(test_accs), test_accs[-1])


@torch.no_grad()
def held_out_scores(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float]:
    """(cross-entropy, accuracy) of the model on held-out digits, in eval mode."""
    model.eval()
    logits = model(images)
    loss = nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()
