"""`overfit` verdicts on a labelled batch of real trainings: wide MLPs on 150 digits.

Why (issue 15): a rising validation loss alone is not doom. The rule must keep runs whose
validation loss rises while their accuracy holds out of red, and turn the runs that memorise
noise red early enough to save most of their compute; Lightning's `EarlyStopping` on the
validation loss, its `SpikeDetection` and Optuna's `MedianPruner`, run on the same readings
(bench/batch_report.py), are the comparison.

The batch: tests/support/overfit_digits.py, clean and noisy labels, with and without weight
decay or dropout, several seeds. Labels come from final quality only: the test accuracy (digits
never logged) at the end against the best the run reached. Each run is judged from its store as
the server would (tests/support/health_replay.py), with the defaults and the `--margin` and
`--drop` (overfit_metric_drop) alternatives in the same run.

    python bench/overfit_batch.py            # 14 runs, ~2 min on 2 cores
    python bench/overfit_batch.py --quick    # 4 runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.batch_report import compare_baselines, read_run, summarise
from tests.support.health_replay import replay
from tests.support.overfit_digits import OverfitCase, train_overfit

CASES = [
    OverfitCase("clean-s0"),
    OverfitCase("clean-s1", seed=1),
    OverfitCase("clean-s2", seed=2),
    OverfitCase("clean-wd-s0", weight_decay=5e-4),
    OverfitCase("clean-600-s0", train_size=600),
    OverfitCase("clean-w128-s3", width=128, seed=3),
    OverfitCase("noise20-wd-s0", label_noise=0.2, weight_decay=2e-2),
    OverfitCase("noise10-s1", label_noise=0.1, seed=1),
    OverfitCase("noise40-s0", label_noise=0.4),
    OverfitCase("noise40-s1", label_noise=0.4, seed=1),
    OverfitCase("noise40-s2", label_noise=0.4, seed=2),
    OverfitCase("noise30-s0", label_noise=0.3),
    OverfitCase("noise40-drop-s0", label_noise=0.4, dropout=0.5),
    OverfitCase("noise50-w1024-s3", label_noise=0.5, width=1024, seed=3),
]
QUICK = [CASES[0], CASES[3], CASES[8], CASES[9]]


def first_red(store: Path, overrides: dict[str, float]) -> int | None:
    for change in replay(store, overrides):
        if change.signal == "overfit" and change.state == "red":
            return change.step
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--margin", type=float, nargs="*", default=[0.25, 0.15, 0.5])
    parser.add_argument("--drop", type=float, nargs="*", default=[0.03, 0.02, 0.05])
    args = parser.parse_args()
    variants = [
        {"overfit_margin": m, "overfit_metric_drop": d} for m in args.margin for d in args.drop
    ]
    runs, reds = [], []
    with tempfile.TemporaryDirectory(prefix="trainlight-overfit-batch-") as tmp:
        for case in QUICK if args.quick else CASES:
            store = Path(tmp) / case.name
            result = train_overfit(store, case)
            runs.append(read_run(store, case.name, case.steps, result.doomed))
            reds.append([first_red(store, v) for v in variants])
            label = "doomed " if result.doomed else "healthy"
            verdicts = " ".join(f"red@{r}" if r is not None else "no-red" for r in reds[-1])
            print(
                f"{case.name:18} test acc best {result.best_test_acc:.3f} final "
                f"{result.final_test_acc:.3f} {label} {verdicts}",
                flush=True,
            )
    print()
    for i, variant in enumerate(variants):
        margin, drop = variant["overfit_margin"], variant["overfit_metric_drop"]
        title = f"overfit margin {margin:.2f} drop {drop:.2f}"
        summarise(title, runs, [r[i] for r in reds])
    compare_baselines(runs)


if __name__ == "__main__":
    main()
