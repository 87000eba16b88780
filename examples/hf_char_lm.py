"""A plain Hugging Face `Trainer` script: a small GPT-2 (built from its config, no download)
learning characters of Python's own documentation, with trainlight added as one callback.

    python examples/hf_char_lm.py                  # a healthy run
    python examples/hf_char_lm.py --lr 1e6         # non-finite loss: red, and stopped
    trainlight serve                               # then open http://127.0.0.1:8050

Everything but the `TrainlightCallback(...)` line is what a Trainer user already writes
(`report_to="trainlight"` works too, with the Monitor's defaults).
"""

from __future__ import annotations

import argparse
import tempfile
from pydoc_data.topics import topics

import torch
import transformers

from trainlight.integrations.transformers import TrainlightCallback

SEQ = 64


def char_chunks(text: str, chars: list[str]) -> list[dict[str, torch.Tensor]]:
    ids = torch.tensor([chars.index(c) for c in text])
    blocks = ids[: len(ids) // SEQ * SEQ].view(-1, SEQ)
    return [{"input_ids": block, "labels": block} for block in blocks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--store", default=None, help="store directory or http:// server URL")
    args = parser.parse_args()
    text = "".join(topics[k] for k in sorted(topics))[:400_000]
    chars = sorted(set(text))
    cut = int(len(text) * 0.95)
    config = transformers.GPT2Config(
        vocab_size=len(chars), n_positions=SEQ, n_embd=64, n_layer=2, n_head=2
    )
    training = transformers.TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        run_name=f"char-lm lr={args.lr:g}",
        max_steps=args.steps,
        per_device_train_batch_size=16,
        learning_rate=args.lr,
        warmup_steps=args.steps // 10,
        logging_steps=20,
        eval_strategy="steps",
        eval_steps=max(args.steps // 10, 10),
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
    )
    trainer = transformers.Trainer(
        model=transformers.GPT2LMHeadModel(config),
        args=training,
        train_dataset=char_chunks(text[:cut], chars),
        eval_dataset=char_chunks(text[cut:], chars)[:64],
        callbacks=[
            TrainlightCallback(
                project="examples", store=args.store, prune_on=["nonfinite", "spike", "overfit"]
            )
        ],
    )
    trainer.train()


if __name__ == "__main__":
    main()
