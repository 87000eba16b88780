"""A small character-level Transformer language model on text that ships with Python
(`pydoc_data.topics`), trained with Adam: the everyday run whose main loss spikes or diverges
when its learning rate is too high. The model is pytorch/examples' `TransformerModel`
(word_language_model.py), code nobody here wrote.

Labels come from final quality only: the held-out loss at the end, against the unigram
(character frequency) baseline a model that learned nothing reaches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import torch
import torch.nn.functional as F

from tests.support.word_language_model import TransformerModel
from trainlight.collectors import Monitor

SEQ, BATCH = 48, 16


@dataclass(frozen=True)
class CharLmResult:
    run_id: str
    final_loss: float  # held-out cross-entropy (nats per character) at the end
    unigram_loss: float  # what predicting character frequencies alone reaches


def corpus() -> tuple[torch.Tensor, torch.Tensor, int]:
    """(train ids, held-out ids, vocabulary size): the first 400k characters of the topics."""
    text = "".join(topics[k] for k in sorted(topics))[:400_000]
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    cut = int(len(ids) * 0.9)
    return ids[:cut], ids[cut:], len(chars)


def train_char_lm(
    store: Path | str | None,
    name: str,
    lr: float,
    steps: int = 300,
    seed: int = 0,
    monitor: dict[str, Any] | None = None,
    overshoot_at: int | None = None,
    watch_every: int | None = None,
    *,
    overshoot_factor: float = 100.0,
    overshoot_for: int | None = None,
) -> CharLmResult:
    """`overshoot_at`: a misconfigured schedule raises the learning rate `overshoot_factor`x
    over the 20 steps from there (a warmup whose target is a typo), as runs that blow up
    mid-way do; with `overshoot_for` it drops back to `lr` that many steps after the ramp (a
    transient: the run may spike and recover). `watch_every`: `mon.watch(model, every=...)`
    (activations, gradients, update ratios)."""
    train, held, vocab = corpus()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = TransformerModel(vocab, 64, 2, 128, 2, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    kwargs = {"store": store, "flush_interval": 0.2, **(monitor or {})}
    with Monitor(run=name, config={"lr": lr, "steps": steps}, **kwargs) as mon:
        if watch_every is not None:
            mon.watch(model, every=watch_every, unit_dim=-1)
        for step in range(steps):
            if overshoot_at is not None and step >= overshoot_at:
                for group in opt.param_groups:
                    group["lr"] = lr * _overshoot(
                        step - overshoot_at, overshoot_factor, overshoot_for
                    )
            x, y = _batch(train, generator)
            loss = F.nll_loss(model(x).reshape(-1, vocab), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
        final = _held_out_loss(model, held, vocab)
        mon.log(steps, val_loss=final)
        return CharLmResult(mon.run_id, final, _unigram_loss(train, held, vocab))


def _overshoot(since: int, factor: float, lasts: int | None) -> float:
    """The learning-rate multiplier `since` steps into an overshoot."""
    if lasts is not None and since >= 20 + lasts:
        return 1.0
    return float(factor ** min(1.0, since / 20))


def _batch(ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(0, len(ids) - SEQ - 1, (BATCH,), generator=generator)
    rows = torch.stack([ids[s : s + SEQ + 1] for s in starts.tolist()], dim=1)  # [seq+1, batch]
    return rows[:-1], rows[1:]


@torch.no_grad()
def _held_out_loss(model: TransformerModel, held: torch.Tensor, vocab: int) -> float:
    model.eval()
    generator = torch.Generator().manual_seed(123)
    losses = []
    for _ in range(8):
        x, y = _batch(held, generator)
        losses.append(float(F.nll_loss(model(x).reshape(-1, vocab), y.reshape(-1))))
    model.train()
    value = sum(losses) / len(losses)
    return value if math.isfinite(value) else math.inf


def _unigram_loss(train: torch.Tensor, held: torch.Tensor, vocab: int) -> float:
    counts = torch.bincount(train, minlength=vocab).double() + 1
    logp = (counts / counts.sum()).log()
    return float(-logp[held].mean())
