"""Deep MLPs on scikit-learn's bundled digits: the runs whose gradients vanish, or not.

`depth` hidden layers of `width` units; `activation` "sigmoid", "relu" or "tanh"; `init_std`
draws every weight from N(0, init_std²) with zero biases (None: PyTorch's default init). A
deep sigmoid net with a tiny init passes almost no gradient to its first layers, and with
plain SGD it never learns. Instrumented exactly as a user would: `Monitor`, `watch(every=10)`,
`log(loss=...)`, the held-out loss and accuracy every 50 steps.

Labels come from final quality only: held-out accuracy at the end (`DOOMED_BELOW`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlight.collectors import Monitor
from trainlight.demo.digits import build_model, load_digits_split
from trainlight.demo.recipes import DigitsRecipe

DOOMED_BELOW = 0.5  # final held-out accuracy under this: the run learned (almost) nothing


@dataclass(frozen=True)
class DeepCase:
    name: str
    activation: str = "relu"
    depth: int = 8
    width: int = 64
    init_std: float | None = None
    optimiser: str = "sgd"  # "sgd" (momentum 0.9) or "adam"
    lr: float = 0.01
    steps: int = 600
    seed: int = 0


@dataclass(frozen=True)
class DeepResult:
    run_id: str
    final_acc: float

    @property
    def doomed(self) -> bool:
        return self.final_acc < DOOMED_BELOW


def build(case: DeepCase) -> nn.Sequential:
    """The demo's MLP (demo/digits.py) with the case's depth, width, activation and init."""
    torch.manual_seed(case.seed)
    recipe = DigitsRecipe(
        activation=case.activation, depth=case.depth, width=case.width, init_std=case.init_std
    )
    return build_model(recipe)


def train_deep(
    store: Path | str | None, case: DeepCase, monitor: dict[str, Any] | None = None
) -> DeepResult:
    data = load_digits_split()
    model = build(case)
    if case.optimiser == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=case.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=case.lr, momentum=0.9)
    batches = torch.Generator().manual_seed(case.seed)
    kwargs = {"store": store, "flush_interval": 0.2, **(monitor or {})}
    with Monitor(run=case.name, config={"case": case.__dict__}, **kwargs) as mon:
        mon.watch(model, every=10)
        for step in range(case.steps):
            model.train()
            idx = data.train[torch.randint(0, len(data.train), (64,), generator=batches)]
            loss = nn.functional.cross_entropy(model(data.images[idx]), data.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
            if step % 50 == 0 or step == case.steps - 1:
                val_loss, val_acc = _held_out(model, data.images, data.labels, data.held_out)
                mon.log(step, val_loss=val_loss, val_acc=val_acc)
            if mon.should_stop():
                break
        return DeepResult(mon.run_id, val_acc)


@torch.no_grad()
def _held_out(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, held: torch.Tensor
) -> tuple[float, float]:
    model.eval()
    logits = model(images[held])
    loss = nn.functional.cross_entropy(logits, labels[held]).item()
    return loss, (logits.argmax(1) == labels[held]).float().mean().item()
