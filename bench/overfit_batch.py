"""`overfit` verdicts on a labelled batch of real trainings: wide MLPs on 150 digits.

Why (issue 15): a rising validation loss alone is not doom. The rule must keep runs whose
validation loss rises while their accuracy holds out of red, and turn the runs that memorise
noise red early enough to save most of their compute; early stopping on the validation loss
(Lightning's `EarlyStopping(monitor="val_loss", mode="min", patience=p, min_delta=0)`, its
documented semantics replayed on the same readings) is the comparison.

The batch: tests/support/overfit_digits.py, clean and noisy labels, with and without weight
decay or dropout, several seeds. Labels come from final quality only: the test accuracy (digits
never logged) at the end against the best the run reached. Each run is judged from its store as
the server would (tests/support/health_replay.py), with the defaults and the `--margin`
alternatives in the same run.

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

from tests.support.health_replay import replay
from tests.support.overfit_digits import OverfitCase, train_overfit
from trainlight.app.store.ingest.transaction import decode_segment
from trainlight.collectors.store_files import run_entries, segment_files

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


def val_losses(store: Path) -> list[tuple[int, float]]:
    """The run's logged validation losses, read back from its segments."""
    out = []
    for _, _, path in segment_files(run_entries(store / "inbox")):
        table = decode_segment(path.read_bytes()).table.to_pydict()
        out += [
            (s, v)
            for s, k, v in zip(table["step"], table["key"], table["value"], strict=True)
            if k == "val_loss"
        ]
    return sorted(out)


def early_stop(readings: list[tuple[int, float]], patience: int) -> int | None:
    """Lightning EarlyStopping (mode min, min_delta 0): the step it stops at, or None."""
    best, wait = float("inf"), 0
    for step, value in readings:
        if value < best:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                return step
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--margin", type=float, nargs="*", default=[0.25, 0.15, 0.5])
    parser.add_argument("--patience", type=int, nargs="*", default=[3, 5, 10])
    args = parser.parse_args()
    variants = [{"overfit_margin": m} for m in args.margin]
    rows = []
    with tempfile.TemporaryDirectory(prefix="trainlight-overfit-batch-") as tmp:
        for case in QUICK if args.quick else CASES:
            store = Path(tmp) / case.name
            result = train_overfit(store, case)
            reds = [first_red(store, v) for v in variants]
            stops = [early_stop(val_losses(store), p) for p in args.patience]
            rows.append((case, result.doomed, reds, stops))
            label = "doomed " if result.doomed else "healthy"
            verdicts = " ".join(f"red@{r}" if r is not None else "no-red" for r in reds)
            print(
                f"{case.name:18} test acc best {result.best_test_acc:.3f} final "
                f"{result.final_test_acc:.3f} {label} {verdicts} | early stop {stops}",
                flush=True,
            )
    print()
    for i, variant in enumerate(variants):
        stops = [(case, doomed, reds[i]) for case, doomed, reds, _ in rows]
        summarise(f"overfit margin {variant['overfit_margin']:.2f}", stops)
    for i, patience in enumerate(args.patience):
        stops = [(case, doomed, early[i]) for case, doomed, _, early in rows]
        summarise(f"EarlyStopping patience {patience}", stops)


def summarise(title: str, stops: list[tuple[OverfitCase, bool, int | None]]) -> None:
    """How one stopping rule did on the batch: (case, doomed, the step it stopped at)."""
    right = sum((stop is not None) == doomed for _, doomed, stop in stops)
    false_kill = sum(stop is not None and not doomed for _, doomed, stop in stops)
    doomed_runs = [(case, stop) for case, doomed, stop in stops if doomed]
    saved = sum(1 - stop / case.steps for case, stop in doomed_runs if stop is not None)
    caught = sum(stop is not None for _, stop in doomed_runs)
    print(
        f"{title:28}: {right}/{len(stops)} right, {false_kill} healthy runs stopped, "
        f"{caught}/{len(doomed_runs)} doomed stopped, "
        f"compute saved on them {(saved / len(doomed_runs) if doomed_runs else 0):.0%}"
    )


if __name__ == "__main__":
    main()
