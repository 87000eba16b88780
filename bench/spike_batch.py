"""`spike` verdicts on a labelled batch of real char-level Transformer LM trainings.

Why (issue 15): the spike rule's defaults must keep every healthy run out of red (healthy
transformers spike too) and turn doomed runs red early enough to save most of their compute.

The batch: tests/support/char_lm.py (pytorch/examples' TransformerModel on `pydoc_data.topics`,
Adam), 300 steps each: sane learning rates (1e-3, 2e-3) on several seeds, and runs whose
schedule overshoots (the learning rate rises 100x over 20 steps from step 100 or 150: a warmup
target with a typo). Labels come from final quality only, never from the signal: a run is doomed
when its held-out loss at the end is not below 85% of the unigram baseline (it unlearned). Each
run is judged from its store as the server would (tests/support/health_replay.py), with the
defaults and with the `--rtol` and `--k` alternatives in the same run.

    python bench/spike_batch.py            # 10 runs, ~6 min on 2 cores
    python bench/spike_batch.py --quick    # 4 runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.char_lm import train_char_lm
from tests.support.health_replay import replay

STEPS = 300
DOOMED_RATIO = 0.85  # held-out loss / unigram loss at the end: at or above it, the run unlearned


@dataclass(frozen=True)
class Case:
    lr: float
    seed: int
    overshoot_at: int | None

    @property
    def name(self) -> str:
        schedule = f"o{self.overshoot_at}" if self.overshoot_at else "sane"
        return f"lr{self.lr:g}-s{self.seed}-{schedule}"


CASES = [
    Case(1e-3, 0, None),
    Case(1e-3, 1, None),
    Case(2e-3, 2, None),
    Case(2e-3, 3, None),
    Case(3e-3, 4, None),
    Case(1e-3, 0, 150),
    Case(1e-3, 1, 100),
    Case(2e-3, 2, 150),
    Case(1e-3, 3, 100),
    Case(2e-3, 4, 100),
]
QUICK = [CASES[0], CASES[2], CASES[5], CASES[6]]


def first_red(store: Path, overrides: dict[str, float]) -> int | None:
    for change in replay(store, overrides):
        if change.signal == "spike" and change.state == "red":
            return change.step
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rtol", type=float, nargs="*", default=[0.3, 0.5, 0.1])
    parser.add_argument("--k", type=float, nargs="*", default=[6.0])
    args = parser.parse_args()
    variants = [{"loss_spike_rtol": r, "loss_spike_k": k} for r in args.rtol for k in args.k]
    rows = []
    with tempfile.TemporaryDirectory(prefix="trainlight-spike-batch-") as tmp:
        for case in QUICK if args.quick else CASES:
            store = Path(tmp) / case.name
            result = train_char_lm(
                store, case.name, case.lr, STEPS, case.seed, None, case.overshoot_at
            )
            doomed = not result.final_loss < DOOMED_RATIO * result.unigram_loss
            reds = [first_red(store, v) for v in variants]
            rows.append((case, result.final_loss / result.unigram_loss, doomed, reds))
            label = "doomed " if doomed else "healthy"
            verdicts = " ".join(f"red@{r}" if r is not None else "no-red" for r in reds)
            print(f"{case.name:22} final/unigram {rows[-1][1]:.2f} {label} {verdicts}", flush=True)
    print()
    for i, variant in enumerate(variants):
        right = sum((reds[i] is not None) == doomed for _, _, doomed, reds in rows)
        false_red = sum(reds[i] is not None and not doomed for _, _, doomed, reds in rows)
        saved = [
            1 - reds[i] / STEPS for _, _, doomed, reds in rows if doomed and reds[i] is not None
        ]
        doomed_n = sum(doomed for _, _, doomed, _ in rows)
        print(
            f"rtol {variant['loss_spike_rtol']:.2f} k {variant['loss_spike_k']:g}: "
            f"{right}/{len(rows)} verdicts right, {false_red} healthy runs red, "
            f"{len(saved)}/{doomed_n} doomed runs red, compute saved on them "
            f"{(sum(saved) / doomed_n if doomed_n else 0):.0%} (of the doomed runs' steps)"
        )


if __name__ == "__main__":
    main()
