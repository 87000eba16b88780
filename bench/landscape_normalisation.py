"""Loss-surface slices normalised once vs at every slice (issue 12, part 3), on the demo's digits.

Why: Li et al.'s filter normalisation gives each filter of the random direction the norm of the
same filter of the weights, so slices of different networks (and of one network at different
steps) are comparable. `mon.landscape` used to normalise its direction once, at the call, and
reuse it while the weights grew: the slices' width and the recorded sharpness then followed the
weight norm, and `trainlight landscape`, which normalises to the checkpoint's weights, drew an α
axis that was not the recorded slice. Now the run's raw draw is renormalised at every slice.

For the demo's MLP and CNN (DigitsRecipe defaults: SGD lr 0.05, momentum 0.9, batch 64), trained
`--steps` steps on scikit-learn's digits with the held-out probe batch, a slice every 50 steps
two ways, from the same seed-0 draw: "once" (normalised to the initial weights, the old
behaviour) and "every slice" (LossSlicer now). Printed per model:

1. direction-filter-norm / weight-filter-norm over every filter of every ≥2-d parameter at the
   last step: median and min (1.000 is the definition);
2. max |CLI − recorded| over the 21 points: the β = 0 row of `trainlight landscape`'s surface
   (`loss_surface` of the model loaded from a checkpoint saved at the last step, seed 0) against
   each way's slice at that step;
3. the time spent in slices, every slice / once (what renormalising costs);
4. sharpness (curvature at α = 0) over the steps, both ways.

    PYTHONPATH=. python bench/landscape_normalisation.py   # ~20 s on an idle 2-core CPU

Needs scikit-learn for the digits (pip install 'trainlight[demo]').
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from trainlight.collectors.landscape_surface import loss_surface
from trainlight.collectors.signals.landscape import LossSlicer, filter_normalised_direction
from trainlight.collectors.signals.lca_probe import ProbeLoss
from trainlight.demo.digits import PROBE_SIZE, build_model, load_digits_split, shuffled_batches
from trainlight.demo.recipes import DigitsRecipe

EVERY = 50
POINTS, SPAN, SEED = 21, 1.0, 0


@dataclass
class Outcome:
    """One model's numbers, "once" vs "every" (every slice)."""

    ratios: dict[str, list[float]] = field(default_factory=dict)
    cli_gap: dict[str, float] = field(default_factory=dict)
    sharpness: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: {"once": 0.0, "every": 0.0})


def filter_ratios(direction: dict[str, torch.Tensor], model: nn.Module) -> list[float]:
    """‖d_i‖ / ‖w_i‖ for every output filter i of every parameter with ≥ 2 dimensions."""
    ratios: list[float] = []
    for name, weight in model.named_parameters():
        if weight.dim() < 2:
            continue
        w = weight.detach().flatten(1).double().norm(dim=1)
        d = direction[name].flatten(1).double().norm(dim=1)
        ratios += (d / w).tolist()
    return ratios


def run_model(kind: str, steps: int, workdir: Path) -> Outcome:
    recipe = DigitsRecipe(model=kind)
    data = load_digits_split()
    probe_x = data.images[data.held_out[:PROBE_SIZE]]
    probe_y = data.labels[data.held_out[:PROBE_SIZE]]

    def probe(m: nn.Module) -> torch.Tensor:
        return nn.functional.cross_entropy(m(probe_x), probe_y)

    torch.manual_seed(SEED)
    model = build_model(recipe)
    slicer = LossSlicer(model, probe, points=POINTS, span=SPAN, seed=SEED)
    once = filter_normalised_direction(list(model.named_parameters()), SEED)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    batches = shuffled_batches(data.train, recipe.batch, torch.Generator().manual_seed(SEED))
    out = Outcome(sharpness={"once": [], "every": []})
    last: dict[str, tuple[float, ...]] = {}
    for step in range(steps + 1):
        idx = next(batches)
        loss = nn.functional.cross_entropy(model(data.images[idx]), data.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % EVERY and step != steps:
            continue
        for way, take in (("once", lambda: slicer.slice_along(once)), ("every", slicer.slice)):
            started = time.perf_counter()
            result = take()
            out.seconds[way] += time.perf_counter() - started
            out.sharpness[way].append((step, result.sharpness))
            last[way] = result.losses
    out.ratios = {
        "once": filter_ratios(once, model),
        "every": filter_ratios(slicer.direction, model),
    }
    checkpoint = workdir / f"{kind}.pt"
    torch.save(model.state_dict(), checkpoint)
    row = cli_row(kind, checkpoint, probe)
    out.cli_gap = {w: max(abs(a - b) for a, b in zip(row, last[w], strict=True)) for w in last}
    return out


def cli_row(kind: str, checkpoint: Path, probe: ProbeLoss) -> tuple[float, ...]:
    """The β = 0 row of the surface `trainlight landscape` computes from the checkpoint: a
    fresh model with the checkpoint's state_dict (as its `load_model`), `loss_surface`."""
    model = build_model(DigitsRecipe(model=kind))
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return loss_surface(model, probe, POINTS, SPAN, seed=SEED).losses[POINTS // 2]


def report(kind: str, out: Outcome) -> None:
    print(f"\n{kind}: direction filter norm / weight filter norm at the last step")
    for way, label in (("once", "normalised once (old)"), ("every", "every slice (new)")):
        r = out.ratios[way]
        print(
            f"  {label:24s} median {statistics.median(r):.3f}  min {min(r):.3f}  max {max(r):.3f}"
        )
    print(f"{kind}: max |CLI α row − recorded slice| at the last step")
    print(f"  old {out.cli_gap['once']:.4g}   new {out.cli_gap['every']:.4g}")
    ratio = out.seconds["every"] / out.seconds["once"]
    print(f"{kind}: time in slices, new / old {ratio:.2f} (renormalising at each slice)")
    print(f"{kind}: sharpness (curvature at α = 0) by step, old -> new")
    for (step, old), (_, new) in zip(out.sharpness["once"], out.sharpness["every"], strict=True):
        print(f"  step {step:4d}: {old:9.4f} -> {new:9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        for kind in ("mlp", "cnn"):
            report(kind, run_model(kind, args.steps, Path(workdir)))
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
