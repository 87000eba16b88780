"""`catch`/`runaway` verdicts on a labelled batch of real GAN trainings, old defaults vs new.

Why: the old fixed windows (500 steps, patience 5,000) never judged a run of a few hundred steps.
The windows now follow each run's own time scale (collectors/health/time_scale.py); this checks
that the same default settings give the right verdict whatever the run's length, and how much of
the doomed runs' compute a prune on the first red would have saved.

The batch: the demo's three GAN recipes (healthy, frozen adversary, DC runaway) at 1/3x, 1x and 3x
the quick demo's 900 steps, each with and without a declared length (`total_steps` in the
config), plus 10k-step runs. Labels come from the trainings' final quality only, measured on
fresh waveforms the run never saw, never from trainlight's signals:
- ran away: the 1-Wasserstein distance between generated and real per-sample means is over half
  the real means' IQR at the end;
- adversary never caught: its AUC at telling fresh real from generated waveforms (sampled 20
  times over the run, from 10% of it on) never reached 0.7.
A run is doomed if either holds. Trainlight's verdict is "doomed" when `catch` or `runaway` ever
turned red (what `prune_on` acts on). Each run's rows are replayed through the rules in chunks of
10 steps, once with this tree's code and once with the code of `--baseline` (default: eca9430,
the last commit before run-length time scales; `git archive`).

    python bench/verdict_batch.py           # 23 runs, a few minutes on 2 cores
    python bench/verdict_batch.py --quick   # 10 runs
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
CHUNK = 10  # steps per replayed evaluation
RECIPES = {
    "healthy": {},
    "frozen adversary": {"adversary_lr": 0.0},
    "dc runaway": {"dc_init": 2.0, "mean_blind": True, "adversary_weight": 0.0, "roles": False},
}


@dataclass(frozen=True)
class Job:
    recipe: str
    steps: int
    declared: bool
    out: str  # directory for the run's rows


@dataclass
class Outcome:
    job: Job
    ran_away: bool
    max_auc: float
    rows: str  # parquet file of the run's rows
    header: dict[str, object]


def train(job: Job) -> Outcome:
    import torch

    from trainlight.collectors import Monitor
    from trainlight.collectors.schema import HEADER_KEY
    from trainlight.collectors.store_files import list_segment_files
    from trainlight.demo.gan import LENGTH, train_gan
    from trainlight.demo.recipes import GanRecipe
    from trainlight.demo.waveforms import waveforms

    torch.set_num_threads(1)
    fresh = waveforms(1024, LENGTH, torch.Generator().manual_seed(99))
    aucs: list[float] = []
    final: list[float] = []
    every = max(1, job.steps // 20)

    def inspect(step: int, gen: torch.nn.Module, disc: torch.nn.Module, _: torch.Tensor) -> None:
        if step % every and step != job.steps - 1:
            return
        with torch.no_grad():
            fake = gen(fresh[:, ::4])
            if step >= job.steps // 10:
                aucs.append(_auc(disc(fresh).flatten().numpy(), disc(fake).flatten().numpy()))
            if step == job.steps - 1:
                final[:] = [_w1_over_iqr(fake.mean(1).numpy(), fresh.mean(1).numpy())]

    store = Path(tempfile.mkdtemp(dir=job.out))
    config = {"total_steps": job.steps} if job.declared else {}
    with Monitor(run=f"{job.recipe} {job.steps}", store=store, config=config) as mon:
        train_gan(mon, GanRecipe(**RECIPES[job.recipe]), job.steps, 1, inspect)  # type: ignore[arg-type]
    tables = [pq.read_table(p) for _, _, p in list_segment_files(store / "inbox")]
    header = json.loads(tables[-1].schema.metadata[HEADER_KEY])
    rows = pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).sort_by("step")
    path = store / "rows.parquet"
    pq.write_table(rows, path)
    return Outcome(job, final[0] > 0.5, max(aucs), str(path), header)


def _auc(real: np.ndarray, fake: np.ndarray) -> float:
    """P(score(real) > score(fake)) (ties count half): the Mann-Whitney AUC."""
    both = np.concatenate([real, fake])
    ranks = np.argsort(np.argsort(both, kind="stable"), kind="stable") + 1.0
    for value in np.unique(both):  # average ranks over ties (a constant adversary: 0.5)
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    n = len(real)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * len(fake)))


def _w1_over_iqr(generated: np.ndarray, real: np.ndarray) -> float:
    quantiles = np.linspace(0.005, 0.995, 199)
    gap = np.abs(np.quantile(generated, quantiles) - np.quantile(real, quantiles)).mean()
    q1, q3 = np.quantile(real, [0.25, 0.75])
    return float(gap / max(q3 - q1, 1e-12))


REPLAY = r"""
import json, sys, dataclasses
import numpy as np, pyarrow.parquet as pq
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth, spec_from_header
out = []
for item in json.load(sys.stdin):
    h = item["header"]
    planned = {}
    if any(f.name == "planned_steps" for f in dataclasses.fields(HealthSpec)):
        planned = {"planned_steps": item["planned"]}
    spec = spec_from_header(h.get("roles", {}), {}, (), **planned)
    rows = pq.read_table(item["rows"])
    steps = rows["step"].to_numpy()
    health, changes = RunHealth(spec), []
    for lo in range(0, int(steps.max()) + 1, CHUNK):
        a, b = np.searchsorted(steps, lo), np.searchsorted(steps, lo + CHUNK)
        for t in health.feed(rows.slice(a, b - a), spec).transitions:
            if t.signal in ("catch", "runaway"):
                changes.append((t.signal, t.state, t.step))
    out.append(changes)
print(json.dumps(out))
""".replace("CHUNK", str(CHUNK))


def replay(outcomes: list[Outcome], tree: Path) -> list[list[tuple[str, str, int]]]:
    """Every run's catch/runaway transitions under the code in `tree` (default settings)."""
    items = [
        {"rows": o.rows, "header": o.header, "planned": o.job.steps if o.job.declared else None}
        for o in outcomes
    ]
    env = {**os.environ, "PYTHONPATH": f"{tree}/.mypy-tree:{tree}"}
    done = subprocess.run(
        [sys.executable, "-c", REPLAY],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return [[tuple(c) for c in run] for run in json.loads(done.stdout)]  # type: ignore[misc]


def baseline_tree(root: Path, rev: str) -> Path:
    """Commit `rev` as files, with the import mapping .ci/mypy builds."""
    tree = root / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    (tree / ".mypy-tree" / "trainlight").mkdir(parents=True)
    for pkg in ("app", "collectors", "demo", "assets"):
        (tree / ".mypy-tree" / "trainlight" / pkg).symlink_to(tree / pkg)
    return tree


def judge(outcome: Outcome, changes: list[tuple[str, str, int]]) -> dict[str, object]:
    doomed = outcome.ran_away or outcome.max_auc < 0.7
    reds = [step for _, state, step in changes if state == "red"]
    finals = {signal: state for signal, state, _ in changes}
    first_red = min(reds) if reds else None
    steps = outcome.job.steps
    saved = (steps - 1 - first_red) / steps if doomed and first_red is not None else 0.0
    return {
        "doomed": doomed,
        "red": first_red is not None,
        "correct": doomed == (first_red is not None),
        "first_red": first_red,
        "saved": saved,
        "final": finals,
    }


def jobs(quick: bool, out: str) -> list[Job]:
    declared = (True,) if quick else (True, False)
    batch = [
        Job(recipe, steps, d, out)
        for steps in (300, 900, 2700)
        for recipe in RECIPES
        for d in declared
    ]
    long = [("frozen adversary", True)]
    if not quick:
        long += [("healthy", True), ("dc runaway", True), ("frozen adversary", False)]
        long += [("healthy", False)]
    return sorted(batch + [Job(r, 10_000, d, out) for r, d in long], key=lambda j: -j.steps)


def report(outcomes: list[Outcome], verdicts: dict[str, list[dict[str, object]]]) -> None:
    print(f"{'run':<30}{'label':<9}" + "".join(f"{name:>34}" for name in verdicts))
    for i, o in enumerate(outcomes):
        label = "doomed" if verdicts["new"][i]["doomed"] else "healthy"
        name = f"{o.job.recipe} {o.job.steps}{'' if o.job.declared else ' (undecl.)'}"
        cells = []
        for judged in verdicts.values():
            v = judged[i]
            finals = "/".join(f"{s}" for s in v["final"].values()) or "-"  # type: ignore[union-attr]
            red = f"red@{v['first_red']}" if v["red"] else "no red"
            cells.append(f"{finals} {red} {v['saved']:.0%}{'' if v['correct'] else ' WRONG'}")
        print(f"{name:<30}{label:<9}" + "".join(f"{c:>34}" for c in cells))
    for version, judged in verdicts.items():
        doomed = [(o, v) for o, v in zip(outcomes, judged, strict=True) if v["doomed"]]
        planned = sum(o.job.steps for o, _ in doomed)
        saved = sum(float(v["saved"]) * o.job.steps for o, v in doomed)  # type: ignore[arg-type]
        killed = sum(1 for v in judged if v["red"] and not v["doomed"])
        correct = sum(1 for v in judged if v["correct"])
        print(
            f"{version}: {correct}/{len(judged)} correct ({correct / len(judged):.0%}), "
            f"{saved / max(planned, 1):.0%} of doomed compute saved, {killed} healthy killed"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="declared lengths only, 10 runs")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--baseline", default="eca9430", help="git revision of the old defaults")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as root:
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            outcomes = pool.map(train, jobs(args.quick, root), chunksize=1)
        outcomes.sort(key=lambda o: (o.job.recipe, o.job.steps, not o.job.declared))
        verdicts = {
            f"old ({args.baseline})": [
                judge(o, c)
                for o, c in zip(
                    outcomes,
                    replay(outcomes, baseline_tree(Path(root), args.baseline)),
                    strict=True,
                )
            ],
            "new": [judge(o, c) for o, c in zip(outcomes, replay(outcomes, REPO), strict=True)],
        }
    report(outcomes, verdicts)
    print(f"load average: {os.getloadavg()}")
    print(
        json.dumps(
            [asdict(o.job) | {"max_auc": o.max_auc, "ran_away": o.ran_away} for o in outcomes]
        )
    )


if __name__ == "__main__":
    main()
