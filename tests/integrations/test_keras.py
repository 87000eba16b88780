"""`TrainlightCallback` in a real Keras 3 `fit` on the torch backend: a model nobody instrumented
by hand, trained on the bundled digits; a healthy run and one whose learning rate makes it NaN."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import numpy as np  # noqa: E402

from tests.support.health_replay import replay  # noqa: E402
from tests.support.store_rows import last_header, logged  # noqa: E402
from trainlight.demo.digits import load_digits_split  # noqa: E402
from trainlight.integrations.keras import TrainlightCallback  # noqa: E402

BATCH = 64
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


class RunningLogs(keras.callbacks.Callback):
    """Keras' own batch logs, to compare the recorded per-batch losses with."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_logs: list[tuple[int, float]] = []  # (batch index in its epoch, logs' loss)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.batch_logs.append((batch, float((logs or {})["loss"])))


def fit(callback: TrainlightCallback, lr: float, epochs: int, loss: str = "ce") -> RunningLogs:
    keras.utils.set_random_seed(0)
    data = load_digits_split()
    images, labels = data.images.reshape(-1, 64).numpy(), data.labels.numpy()
    train, held_out = data.train.numpy(), data.held_out.numpy()
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)],
        name="digits_mlp",
    )
    if loss == "mse":  # squared error on one-hot targets: a too-high rate blows it up to Inf
        labels = np.eye(10, dtype="float32")[labels]
        model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9), loss="mse")
    else:
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    running = RunningLogs()
    held = (images[held_out], labels[held_out])
    model.fit(
        images[train],
        labels[train],
        validation_data=held,
        epochs=epochs,
        batch_size=BATCH,
        callbacks=[callback, running],
        verbose=0,
    )
    return running


def test_a_healthy_fit_records_each_batch_own_loss_and_ends_finished_and_green(
    tmp_path: Path,
) -> None:
    callback = TrainlightCallback(store=tmp_path, project="digits", flush_interval=0.2)
    running = fit(callback, lr=1e-3, epochs=3)
    header = last_header(tmp_path)
    assert (header.name, header.project, header.status) == ("digits_mlp", "digits", "finished")
    assert header.config["optimizer"] == "Adam" and header.config["epochs"] == 3
    steps = len(running.batch_logs)
    assert header.total_steps == steps == callback.step
    losses = logged(tmp_path, "loss")
    assert [s for s, _, _ in losses] == list(range(1, steps + 1))
    # Keras' batch logs are the epoch's running mean of exactly these per-batch losses
    # (weighted by batch size: only an epoch's last batch may be short).
    total = weight = 0.0
    sizes = _batch_sizes(len(load_digits_split().train), BATCH)
    for (batch, running_mean), (_, loss, _) in zip(running.batch_logs, losses, strict=True):
        if batch == 0:
            total = weight = 0.0
        total, weight = total + loss * sizes[batch], weight + sizes[batch]
        assert running_mean == pytest.approx(total / weight, rel=1e-5)
    assert len({round(loss, 6) for _, loss, _ in losses}) > steps * 0.9  # not a smoothed curve
    val_steps = [s for s, _, _ in logged(tmp_path, "val_loss")]
    assert val_steps == [steps // 3 * e for e in (1, 2, 3)]
    assert len(logged(tmp_path, "epoch/accuracy")) == len(logged(tmp_path, "val_accuracy")) == 3
    assert logged(tmp_path, "grad_norm", table="layer_metrics")  # the model is watched
    states = {t.signal: t.state for t in replay(tmp_path)}
    assert states["nonfinite"] == "green" and "red" not in states.values()


def test_a_red_prune_on_signal_stops_fit_within_two_flush_intervals(tmp_path: Path) -> None:
    flush = 0.5
    callback = TrainlightCallback(
        "too hot", store=tmp_path, prune_on=["nonfinite"], flush_interval=flush
    )
    running = fit(callback, lr=100.0, epochs=30, loss="mse")
    header = last_header(tmp_path)
    assert header.status == "stopped"
    assert header.stop_reason.startswith("auto-pruned: nonfinite red: loss = ")
    planned = 30 * len(_batch_sizes(len(load_digits_split().train), BATCH))
    assert len(running.batch_logs) < planned
    losses = logged(tmp_path, "loss")
    first_bad = next(wall for _, value, wall in losses if not math.isfinite(value))
    assert (losses[-1][2] - first_bad).total_seconds() <= 2 * flush


def _batch_sizes(examples: int, batch: int) -> list[int]:
    full, rest = divmod(examples, batch)
    return [batch] * full + ([rest] if rest else [])
