"""`gradients` verdicts on a labelled batch of real trainings: deep MLPs on the digits and
char-level Transformer LMs.

Why (issue 15): the rule's defaults must keep healthy runs (including ones whose gradients start
large, or that sit on a plateau and then learn) out of red and turn runs whose gradients vanish
or explode red early enough to save most of their compute.

The batch: tests/support/deep_mlp.py (8 hidden layers; sigmoid / tanh / ReLU, default or tiny
init, SGD or Adam) and tests/support/char_lm.py (sane and overshooting schedules), every one
instrumented with `watch(every=10)`. Labels come from final quality only: deep MLPs are doomed
when their held-out accuracy ends under 0.5, LMs when their held-out loss ends at or above 85%
of the unigram baseline. Each run is judged from its store as the server would
(tests/support/health_replay.py), with the defaults and the `--vanish` alternatives; the
healthy runs' update ratios are summarised (the folklore centre is 1e-3). Lightning's
`SpikeDetection` and `EarlyStopping` and Optuna's `MedianPruner` run on the same readings
(bench/batch_report.py) are the comparison.

    python bench/gradients_batch.py            # 14 runs, ~4 min on 2 cores
    python bench/gradients_batch.py --quick    # 4 runs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batch_report import Run, compare_baselines, read_run, readings, summarise
from tests.support.char_lm import train_char_lm
from tests.support.deep_mlp import DeepCase, train_deep
from tests.support.health_replay import replay
from trainlight.collectors.wire import UPDATE_RATIO

DEEP = [
    DeepCase("relu-kaiming-sgd", "relu", lr=0.01),
    DeepCase("relu-kaiming-adam", "relu", optimiser="adam", lr=1e-3),
    DeepCase("tanh-default-sgd", "tanh", lr=0.02),
    DeepCase("sigmoid-4-adam", "sigmoid", depth=4, optimiser="adam", lr=3e-3),
    DeepCase("relu-s1-sgd", "relu", lr=0.01, seed=1),
    DeepCase("sigmoid-default-sgd", "sigmoid", lr=0.1),
    DeepCase("sigmoid-tiny-sgd", "sigmoid", init_std=0.01, lr=0.1),
    DeepCase("sigmoid-tiny-adam", "sigmoid", init_std=0.01, optimiser="adam", lr=1e-3),
    DeepCase("relu-tiny-sgd", "relu", init_std=0.01, lr=0.05),
    DeepCase("relu-hot-sgd", "relu", lr=0.1),
]
LMS = [(1e-3, 0, None), (2e-3, 1, None), (1e-3, 0, 100), (2e-3, 2, 150)]  # lr, seed, overshoot
QUICK_DEEP, QUICK_LMS = [DEEP[0], DEEP[6]], [LMS[0], LMS[2]]
LM_STEPS = 300
DOOMED_RATIO = 0.85


def first_red(store: Path, overrides: dict[str, float]) -> int | None:
    for change in replay(store, overrides):
        if change.signal == "gradients" and change.state == "red":
            return change.step
    return None


def update_ratios(store: Path) -> list[float]:
    return [v for _, v in readings(store, UPDATE_RATIO, "layer_metrics") if v]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--vanish", type=float, nargs="*", default=[3e-3, 1e-3, 1e-2])
    args = parser.parse_args()
    variants = [{"gradients_vanish": v} for v in args.vanish]
    runs: list[Run] = []
    reds: list[list[int | None]] = []
    healthy_ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="trainlight-gradients-batch-") as tmp:
        for case in QUICK_DEEP if args.quick else DEEP:
            store = Path(tmp) / case.name
            result = train_deep(store, case)
            runs.append(read_run(store, case.name, case.steps, result.doomed))
            reds.append([first_red(store, v) for v in variants])
            if not result.doomed:
                healthy_ratios += update_ratios(store)
            report(runs[-1], reds[-1], f"held-out acc {result.final_acc:.2f}")
        for lr, seed, overshoot in QUICK_LMS if args.quick else LMS:
            name = f"lm-lr{lr:g}-s{seed}-{'o' + str(overshoot) if overshoot else 'sane'}"
            store = Path(tmp) / name
            lm = train_char_lm(store, name, lr, LM_STEPS, seed, None, overshoot, watch_every=10)
            doomed = not lm.final_loss < DOOMED_RATIO * lm.unigram_loss
            runs.append(read_run(store, name, LM_STEPS, doomed))
            reds.append([first_red(store, v) for v in variants])
            if not doomed:
                healthy_ratios += update_ratios(store)
            report(runs[-1], reds[-1], f"final/unigram {lm.final_loss / lm.unigram_loss:.2f}")
    print()
    if healthy_ratios:
        q = statistics.quantiles(healthy_ratios, n=100)
        print(
            f"healthy runs' update ratios: median {statistics.median(healthy_ratios):.2e}, "
            f"1st-99th percentile {q[0]:.2e}-{q[98]:.2e}, max {max(healthy_ratios):.2e}"
        )
    for i, variant in enumerate(variants):
        summarise(f"gradients vanish {variant['gradients_vanish']:g}", runs, [r[i] for r in reds])
    compare_baselines(runs)


def report(run: Run, reds: list[int | None], quality: str) -> None:
    verdicts = " ".join(f"red@{r}" if r is not None else "no-red" for r in reds)
    label = "doomed " if run.doomed else "healthy"
    print(f"{run.name:26} {quality} {label} {verdicts}", flush=True)


if __name__ == "__main__":
    main()
