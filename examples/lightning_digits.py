"""A plain Lightning script on scikit-learn's bundled digits, with trainlight added as one callback.

    python examples/lightning_digits.py                 # a healthy run
    python examples/lightning_digits.py --lr 30         # too hot: red, and stopped by prune_on
    trainlight serve                                    # then open http://127.0.0.1:8050

Everything but the `TrainlightCallback(...)` line is what a Lightning user already writes.
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

from trainlight.integrations.lightning import TrainlightCallback


class DigitsClassifier(L.LightningModule):
    def __init__(self, lr: float = 0.05, width: int = 128) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        self.log("train_acc", (logits.argmax(1) == y).float().mean())
        return nn.functional.cross_entropy(logits, y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"], momentum=0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--store", default=None, help="store directory or http:// server URL")
    args = parser.parse_args()
    L.seed_everything(0)
    digits = load_digits()
    data = TensorDataset(
        torch.tensor(digits.data / 16.0, dtype=torch.float32), torch.tensor(digits.target)
    )
    train, val = random_split(data, [0.8, 0.2], generator=torch.Generator().manual_seed(0))
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        callbacks=[
            TrainlightCallback(
                f"digits lr={args.lr:g}",
                project="examples",
                store=args.store,
                prune_on=["nonfinite", "spike", "gradients"],
            )
        ],
    )
    trainer.fit(
        DigitsClassifier(lr=args.lr),
        DataLoader(train, batch_size=32, shuffle=True),
        DataLoader(val, batch_size=256),
    )


if __name__ == "__main__":
    main()
