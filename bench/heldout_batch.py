"""Every signal's defaults on a held-out batch: runs no default was tuned on, judged together.

Why (issue 15): the defaults were set on bench/spike_batch.py, overfit_batch.py and
gradients_batch.py. This batch mixes a family none of them saw (CNNs on the digits,
tests/support/digits_cnn.py) with new seeds and settings of the LM and deep-MLP families,
instrumented exactly as a user would (`Monitor`, `watch(every=10)`, `log(loss=...)`, validation
loss and accuracy where the run has them): healthy runs, doomed runs (a schedule with a typo,
vanishing gradients, memorised noisy labels, a learning rate far too high), and runs that look
scary early but end healthy (a transient learning-rate jump, a clean-label net whose validation
loss rises while its accuracy holds). Labels come from final quality only (each support module
says how), never from a signal.

A run's verdict is every signal together, as the grid shows it: killed at its first red of any
signal (what `prune_on` would do), and its final verdict is red when any signal ends red. The
bar: >= 95% of final verdicts right, no healthy run ever red, doomed runs red early enough to save
>= 60% of their compute, more than Lightning's SpikeDetection, EarlyStopping and Optuna's
MedianPruner save at zero healthy runs stopped on the same readings (bench/batch_report.py).

    python bench/heldout_batch.py            # 20 runs, ~6 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batch_report import Run, compare_baselines, read_run, summarise
from tests.support.char_lm import train_char_lm
from tests.support.deep_mlp import DeepCase, train_deep
from tests.support.digits_cnn import CnnCase, train_cnn
from tests.support.health_replay import replay
from trainlight.collectors.health.verdict import RED

LM_STEPS = 600
LM_DOOMED_RATIO = 0.85  # held-out loss / unigram loss at the end: at or above it, unlearned

Trainer = Callable[[Path], bool]  # trains one run into the store; True when it ended doomed


# Each entry: (run name, planned steps, its trainer).
def cnn(case: CnnCase) -> tuple[str, int, Trainer]:
    return case.name, case.steps, lambda store: train_cnn(store, case).doomed


def deep(case: DeepCase) -> tuple[str, int, Trainer]:
    return case.name, case.steps, lambda store: train_deep(store, case).doomed


def lm(
    name: str,
    lr: float,
    seed: int,
    at: int | None = None,
    factor: float = 100.0,
    lasts: int | None = None,
) -> tuple[str, int, Trainer]:
    def run(store: Path) -> bool:
        result = train_char_lm(
            store, name, lr, LM_STEPS, seed, None, at, watch_every=10,
            overshoot_factor=factor, overshoot_for=lasts,
        )  # fmt: skip
        return not result.final_loss < LM_DOOMED_RATIO * result.unigram_loss

    return name, LM_STEPS, run


def batch(o: int = 0) -> list[tuple[str, int, Trainer]]:
    """The batch; `o` shifts every seed (a fresh draw of the same recipes)."""
    return [
        cnn(CnnCase(f"cnn-adam-s{10 + o}", seed=10 + o)),
        cnn(CnnCase(f"cnn-adam-s{11 + o}", seed=11 + o)),
        cnn(CnnCase(f"cnn-sgd-s{12 + o}", optimiser="sgd", lr=0.02, seed=12 + o)),
        cnn(CnnCase(f"cnn-tanh-s{13 + o}", activation="tanh", seed=13 + o)),
        cnn(CnnCase(f"cnn-clean150-s{14 + o}", train_size=150, steps=1200, seed=14 + o)),
        cnn(CnnCase(f"cnn-jump-s{15 + o}", lr_jump_at=150, seed=15 + o)),
        cnn(CnnCase(f"cnn-sgd-hot-s{16 + o}", optimiser="sgd", lr=0.5, seed=16 + o)),
        cnn(
            CnnCase(
                f"cnn-noise40-s{17 + o}", label_noise=0.4, train_size=150, steps=1200, seed=17 + o
            )
        ),
        cnn(
            CnnCase(
                f"cnn-sigmoid-tiny-s{18 + o}",
                "sigmoid",
                depth=6,
                init_std=0.01,
                optimiser="sgd",
                lr=0.05,
                seed=18 + o,
            )
        ),
        cnn(CnnCase(f"cnn-transient-s{19 + o}", lr_jump_at=100, lr_jump=10, seed=19 + o)),
        deep(DeepCase(f"mlp-relu-adam-s{20 + o}", "relu", optimiser="adam", lr=1e-3, seed=20 + o)),
        deep(DeepCase(f"mlp-tanh-sgd-s{21 + o}", "tanh", lr=0.02, seed=21 + o)),
        deep(
            DeepCase(f"mlp-sigmoid-tiny-s{22 + o}", "sigmoid", init_std=0.01, lr=0.1, seed=22 + o)
        ),
        deep(
            DeepCase(
                f"mlp-relu-tiny-adam-s{23 + o}",
                "relu",
                init_std=0.01,
                optimiser="adam",
                lr=1e-3,
                seed=23 + o,
            )
        ),
        lm(f"lm-1.5e-3-s{30 + o}", 1.5e-3, 30 + o),
        lm(f"lm-2.5e-3-s{31 + o}", 2.5e-3, 31 + o),
        lm(f"lm-o120-s{32 + o}", 1.5e-3, 32 + o, at=120),
        lm(f"lm-o250-s{33 + o}", 1e-3, 33 + o, at=250),
        lm(f"lm-transient-s{34 + o}", 1.5e-3, 34 + o, at=80, factor=10.0, lasts=10),
        lm(f"lm-transient-s{35 + o}", 1e-3, 35 + o, at=150, factor=30.0, lasts=10),
    ]


def judged(store: Path) -> tuple[int | None, list[str], bool]:
    """(the step of the first red of any signal, the signals red then, whether any signal ends
    red) with the defaults."""
    first_red: int | None = None
    reds: list[str] = []
    last: dict[str, str] = {}
    for change in replay(store):
        last[change.signal] = change.state
        if change.state == RED and (first_red is None or change.step == first_red):
            first_red = change.step
            reds.append(change.signal)
    return first_red, reds, RED in last.values()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the runs' stores here (re-judge them later)"
    )
    parser.add_argument(
        "--seed-offset", type=int, default=0, help="a fresh batch: every seed shifted by this"
    )
    args = parser.parse_args()
    runs: list[Run] = []
    kills: list[int | None] = []
    finals_right = 0
    with tempfile.TemporaryDirectory(prefix="trainlight-heldout-batch-") as tmp:
        for name, steps, train in batch(args.seed_offset):
            store = (args.keep or Path(tmp)) / name
            doomed = train(store)
            runs.append(read_run(store, name, steps, doomed))
            first_red, signals, ends_red = judged(store)
            kills.append(first_red)
            finals_right += ends_red == doomed
            label = "doomed " if doomed else "healthy"
            verdict = f"red@{first_red} ({', '.join(signals)})" if first_red is not None else "-"
            final = "ends red" if ends_red else "ends not red"
            print(f"{name:24} {label} first {verdict:34} {final}", flush=True)
    print()
    print(f"final verdicts right: {finals_right}/{len(runs)}")
    summarise("trainlight (first red of any signal)", runs, kills)
    compare_baselines(runs)


if __name__ == "__main__":
    main()
