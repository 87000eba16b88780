"""`TrainlightCallback` in a real Hugging Face `Trainer`: a small GPT-2 built from its config (no
download) learning characters of Python's own documentation; a healthy run and one whose
learning rate makes its loss non-finite, which `logging_nan_inf_filter` would hide from on_log."""

from __future__ import annotations

import math
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import torch  # noqa: E402

from tests.support.health_replay import replay  # noqa: E402
from tests.support.store_rows import last_header, logged  # noqa: E402
from trainlight.integrations.transformers import TrainlightCallback  # noqa: E402

SEQ = 32


class CharChunks(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids) // SEQ - 1

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        chunk = self.ids[i * SEQ : (i + 1) * SEQ]
        return {"input_ids": chunk, "labels": chunk}


def datasets() -> tuple[CharChunks, CharChunks, int]:
    text = "".join(topics[k] for k in sorted(topics))[:60_000]
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    cut = int(len(ids) * 0.9)
    return CharChunks(ids[:cut]), CharChunks(ids[cut:]), len(chars)


def train(
    tmp_path: Path,
    callback: TrainlightCallback | None,
    lr: float,
    steps: int,
    report_to: str = "none",
) -> Any:
    train_set, eval_set, vocab = datasets()
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=vocab, n_positions=SEQ, n_embd=32, n_layer=2, n_head=2
    )
    model = transformers.GPT2LMHeadModel(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=lr,
        logging_steps=10,
        eval_strategy="steps",
        eval_steps=20,
        per_device_eval_batch_size=32,
        save_strategy="no",
        report_to=report_to,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=torch.utils.data.Subset(eval_set, range(64)),
        callbacks=[callback] if callback is not None else None,
    )
    trainer.train()
    return trainer


def test_a_healthy_trainer_run_is_finished_green_with_exact_step_losses(tmp_path: Path) -> None:
    store = tmp_path / "store"
    trainer = train(tmp_path, TrainlightCallback(store=store, flush_interval=0.2), 3e-3, 60)
    header = last_header(store)
    assert (header.name, header.status) == ("GPT2LMHeadModel", "finished")
    assert header.config["learning_rate"] == 3e-3 and header.config["model"]["n_layer"] == 2
    assert header.total_steps == 60
    losses = logged(store, "loss")
    assert [s for s, _, _ in losses] == list(range(1, 61))
    logged_average = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    mine = [v for s, v, _ in losses if s <= 10]
    assert sum(mine) / 10 == pytest.approx(logged_average[0], rel=1e-4)  # what on_log averaged
    assert [s for s, _, _ in logged(store, "eval_loss")] == [20, 40, 60]
    assert logged(store, "learning_rate") and logged(store, "grad_norm", table="layer_metrics")
    states = {t.signal: t.state for t in replay(store)}
    assert states["nonfinite"] == "green" and "red" not in states.values()


def test_a_non_finite_loss_is_seen_and_stops_the_trainer(tmp_path: Path) -> None:
    store = tmp_path / "store"
    callback = TrainlightCallback(
        "too hot", store=store, prune_on=["nonfinite"], flush_interval=0.3
    )
    trainer = train(tmp_path, callback, 1e6, 400)
    header = last_header(store)
    assert header.status == "stopped"
    assert header.stop_reason.startswith("auto-pruned: nonfinite red: loss = ")
    assert trainer.state.global_step < 400
    on_log = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert all(math.isfinite(v) for v in on_log)  # what logging_nan_inf_filter left on_log
    losses = logged(store, "loss")
    first_bad = next(wall for _, value, wall in losses if not math.isfinite(value))
    assert (losses[-1][2] - first_bad).total_seconds() <= 2 * 0.3


def test_report_to_trainlight_adds_the_callback_with_monitor_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINLIGHT_DIR", str(tmp_path / "store"))
    trainer = train(tmp_path, None, 3e-3, 20, report_to="trainlight")
    assert any(isinstance(c, TrainlightCallback) for c in trainer.callback_handler.callbacks)
    assert last_header(tmp_path / "store").status == "finished"
    assert len(logged(tmp_path / "store", "loss")) == 20
