"""`spike` verdicts on a labelled batch of real char-level Transformer LM trainings.

Why (issue 15): the spike rule's defaults must keep every healthy run out of red (healthy
transformers spike too) and turn doomed runs red early enough to save most of their compute.

The batch: tests/support/char_lm.py (pytorch/examples' TransformerModel on `pydoc_data.topics`,
Adam), 600 steps each, recorded as the held-out batch is (`watch(every=10)`: the rule reads
the layers' gradients to tell a spike that relearns from one stuck for good): sane learning
rates (1e-3 to 3e-3) on several seeds; runs whose schedule overshoots for good (the learning
rate rises 100x over 20 steps from step 100 to 200: a warmup target with a typo); and
transients that look scary early (10-30x for 5-20 steps, then back), some of which recover and
some not. Labels come from final quality only, never from the
signal: a run is doomed when its held-out loss at the end is not below 85% of the unigram
baseline (it unlearned). Each run is judged from its store as the server would
(tests/support/health_replay.py), with the defaults and with the `--rtol` and `--k`
alternatives in the same run; Lightning's `SpikeDetection` and Optuna's `MedianPruner` run on
the same readings (bench/batch_report.py) are the comparison.

    python bench/spike_batch.py            # 14 runs, ~6 min on 2 cores
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

from bench.batch_report import compare_baselines, read_run, summarise
from tests.support.char_lm import train_char_lm
from tests.support.health_replay import replay

STEPS = 600
DOOMED_RATIO = 0.85  # held-out loss / unigram loss at the end: at or above it, the run unlearned


@dataclass(frozen=True)
class Case:
    lr: float
    seed: int
    overshoot_at: int | None
    factor: float = 100.0  # the learning rate rises this much over 20 steps ...
    lasts: int | None = None  # ... and drops back after this many more (None: never)

    @property
    def name(self) -> str:
        if self.overshoot_at is None:
            return f"lr{self.lr:g}-s{self.seed}-sane"
        schedule = f"o{self.overshoot_at}x{self.factor:g}"
        transient = f"-for{self.lasts}" if self.lasts else ""
        return f"lr{self.lr:g}-s{self.seed}-{schedule}{transient}"


CASES = [
    Case(1e-3, 0, None),
    Case(1e-3, 1, None),
    Case(2e-3, 2, None),
    Case(2e-3, 3, None),
    Case(3e-3, 4, None),
    Case(1e-3, 0, 150),
    Case(1e-3, 1, 100),
    Case(2e-3, 2, 200),
    Case(1e-3, 3, 100),
    Case(2e-3, 4, 150),
    Case(2e-3, 5, 100, 10, 10),
    Case(1e-3, 6, 150, 30, 5),
    Case(2e-3, 7, 60, 20, 10),
    Case(1e-3, 8, 200, 10, 20),
]
QUICK = [CASES[0], CASES[2], CASES[5], CASES[10]]


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
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the runs' stores here (re-judge them later)"
    )
    args = parser.parse_args()
    variants = [{"loss_spike_rtol": r, "loss_spike_k": k} for r in args.rtol for k in args.k]
    runs, reds = [], []
    with tempfile.TemporaryDirectory(prefix="trainlight-spike-batch-") as tmp:
        for case in QUICK if args.quick else CASES:
            store = (args.keep or Path(tmp)) / case.name
            result = train_char_lm(
                store,
                case.name,
                case.lr,
                STEPS,
                case.seed,
                None,
                case.overshoot_at,
                watch_every=10,
                overshoot_factor=case.factor,
                overshoot_for=case.lasts,
            )
            ratio = result.final_loss / result.unigram_loss
            runs.append(read_run(store, case.name, STEPS, not ratio < DOOMED_RATIO))
            reds.append([first_red(store, v) for v in variants])
            label = "doomed " if runs[-1].doomed else "healthy"
            verdicts = " ".join(f"red@{r}" if r is not None else "no-red" for r in reds[-1])
            print(f"{case.name:26} final/unigram {ratio:.2f} {label} {verdicts}", flush=True)
    print()
    for i, variant in enumerate(variants):
        title = f"spike rtol {variant['loss_spike_rtol']:.2f} k {variant['loss_spike_k']:g}"
        summarise(title, runs, [r[i] for r in reds])
    compare_baselines(runs)


if __name__ == "__main__":
    main()
