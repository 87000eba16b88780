"""`TrainlightCallback` in a real Lightning `Trainer`: a LightningModule nobody instrumented by
hand, trained on the bundled digits; a healthy run and one whose learning rate makes it NaN."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

pl = pytest.importorskip("lightning.pytorch")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from tests.support.health_replay import replay  # noqa: E402
from tests.support.store_rows import last_header, logged  # noqa: E402
from trainlight.demo.digits import load_digits_split  # noqa: E402
from trainlight.integrations.lightning import TrainlightCallback  # noqa: E402


class DigitsClassifier(pl.LightningModule):
    """What a user writes: hparams saved, `self.log` in the steps, no trainlight anywhere."""

    def __init__(self, lr: float = 1e-3, width: int = 64, loss: str = "ce") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10)
        )

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, or squared error on one-hot targets (which a too-high learning
        rate blows up to Inf, then NaN)."""
        if self.hparams["loss"] == "mse":
            return nn.functional.mse_loss(logits, nn.functional.one_hot(labels, 10).float())
        return nn.functional.cross_entropy(logits, labels)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.net(images)
        loss = self.loss(logits, labels)
        self.log("train_acc", (logits.argmax(1) == labels).float().mean())
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images, labels = batch
        logits = self.net(images)
        self.log("val_loss", self.loss(logits, labels))
        self.log("val_acc", (logits.argmax(1) == labels).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"], momentum=0.9)


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    data = load_digits_split()
    train = TensorDataset(data.images[data.train], data.labels[data.train])
    held = TensorDataset(data.images[data.held_out], data.labels[data.held_out])
    generator = torch.Generator().manual_seed(0)
    return DataLoader(train, batch_size=32, shuffle=True, generator=generator), DataLoader(
        held, batch_size=128
    )


def fit(model: pl.LightningModule, callback: TrainlightCallback, epochs: int) -> pl.Trainer:
    torch.manual_seed(0)
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[callback],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    train, val = loaders()
    trainer.fit(model, train, val)
    return trainer


def test_a_healthy_fit_is_one_run_finished_and_green_with_its_metrics(tmp_path: Path) -> None:
    callback = TrainlightCallback(store=tmp_path, project="digits", flush_interval=0.2)
    model = DigitsClassifier(lr=0.05)
    trainer = fit(model, callback, epochs=3)
    header = last_header(tmp_path)
    assert (header.name, header.project, header.status) == (
        "DigitsClassifier",
        "digits",
        "finished",
    )
    assert header.config["lr"] == 0.05 and header.config["trainer"]["max_epochs"] == 3
    assert header.total_steps == trainer.global_step
    losses = logged(tmp_path, "loss")
    assert [s for s, _, _ in losses] == list(range(1, trainer.global_step + 1))  # each step once
    assert len(logged(tmp_path, "train_acc")) == trainer.global_step
    val_steps = [s for s, _, _ in logged(tmp_path, "val_loss")]
    assert val_steps == [trainer.global_step // 3 * e for e in (1, 2, 3)]  # no sanity check
    assert len(logged(tmp_path, "val_acc")) == 3
    # the module is watched: each training_step is a pass, observed every 10th optimiser step
    for key in ("grad_norm", "update_ratio"):
        observed = {s for s, _, _ in logged(tmp_path, key, table="layer_metrics")}
        # (the first, before any step was logged, counts as step 0)
        assert observed == {0} | set(range(11, trainer.global_step + 1, 10)), key
    assert "training_step" not in model.__dict__  # the wrapper is gone after fit
    states = {t.signal: t.state for t in replay(tmp_path)}
    assert states["nonfinite"] == "green" and "red" not in states.values()


def test_a_red_prune_on_signal_stops_the_trainer_within_two_flush_intervals(
    tmp_path: Path,
) -> None:
    flush = 0.5
    callback = TrainlightCallback(
        "too hot", store=tmp_path, prune_on=["nonfinite"], flush_interval=flush
    )
    trainer = fit(DigitsClassifier(lr=100.0, loss="mse"), callback, epochs=20)
    header = last_header(tmp_path)
    assert header.status == "stopped"
    assert header.stop_reason.startswith("auto-pruned: nonfinite red: loss = ")
    assert trainer.should_stop and trainer.current_epoch < 19
    losses = logged(tmp_path, "loss")
    first_bad = next(wall for _, value, wall in losses if not math.isfinite(value))
    assert (losses[-1][2] - first_bad).total_seconds() <= 2 * flush


def test_an_exception_in_training_closes_the_run_as_crashed(tmp_path: Path) -> None:
    class Crashes(DigitsClassifier):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self.global_step == 5:
                raise RuntimeError("out of memory (simulated)")
            return super().training_step(batch, batch_idx)

    with pytest.raises(RuntimeError, match="simulated"):
        fit(Crashes(), TrainlightCallback(store=tmp_path), epochs=1)
    assert last_header(tmp_path).status == "crashed"
    assert [s for s, _, _ in logged(tmp_path, "loss")] == [1, 2, 3, 4, 5]


def test_a_probe_measures_lca_around_the_optimiser_steps(tmp_path: Path) -> None:
    data = load_digits_split()
    probe_images, probe_labels = data.images[data.held_out[:64]], data.labels[data.held_out[:64]]

    def probe(module: torch.nn.Module) -> torch.Tensor:
        return nn.functional.cross_entropy(module.net(probe_images), probe_labels)

    callback = TrainlightCallback(
        store=tmp_path, watch_every=None, probe=probe, lca_every=10, flush_interval=0.2
    )
    trainer = fit(DigitsClassifier(lr=0.05), callback, epochs=1)
    totals = logged(tmp_path, "lca/total")
    actual = {s: v for s, v, _ in logged(tmp_path, "lca/actual")}
    assert [s for s, _, _ in totals] == list(range(10, trainer.global_step + 1, 10))
    for step, total, _ in totals:  # the allocation adds up to the probe loss change of the step
        assert total == pytest.approx(actual[step], abs=0.01)
    assert {s for s, _, _ in logged(tmp_path, "lca", table="layer_metrics")} == set(actual)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_under_ddp_a_red_signal_on_rank_0_stops_every_rank(tmp_path: Path) -> None:
    """Two CPU processes (gloo, spawned): rank 0 alone holds the Monitor, the stop is agreed with
    `reduce_boolean_decision`, so both ranks leave the loop at the same batch and the job ends
    instead of waiting forever in the next all-reduce of gradients. (It once did: rank 0 alone
    read `estimated_stepping_batches`, which synchronises the ranks.)"""
    callback = TrainlightCallback(
        "ddp too hot", store=tmp_path, prune_on=["nonfinite"], flush_interval=0.3
    )
    trainer = pl.Trainer(
        max_epochs=20,
        callbacks=[callback],
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    train, val = loaders()
    # spawn pickles the loaders' tensors to the workers: through files, as /dev/shm may be small
    sharing = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    try:
        trainer.fit(DigitsClassifier(lr=100.0, loss="mse"), train, val)
    finally:
        torch.multiprocessing.set_sharing_strategy(sharing)
    header = last_header(tmp_path)
    assert header.status == "stopped" and header.config["trainer"]["world_size"] == 2
    assert header.stop_reason.startswith("auto-pruned: nonfinite red: loss = ")
    steps = [s for s, _, _ in logged(tmp_path, "loss")]
    assert steps == list(range(1, len(steps) + 1))  # one writer: each step once
    assert len(steps) < 20 * len(train) // 2  # well before the planned end
