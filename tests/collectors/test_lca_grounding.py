"""LCA is grounded at its defaults on a ReLU net, and its tolerance rule, against naive references.

Grounded: |ΔL − ΣA| ≤ 1%·|ΔL| on the measured steps of a real training (a ReLU MLP on
scikit-learn's digits, SGD with momentum). The per-layer values are checked against a brute-force
composite Simpson written here from the formula: the gradient in float64 at each point of the
straight path θ_t → θ_{t+1}, weighted 1, 4, 2, ..., 4, 1 (times h/3), times Δθ, summed per layer.
"""

from __future__ import annotations

import collections
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.lca import GROUNDED, INTERVALS, LossChangeAllocator
from trainlight.collectors.signals.simpson import Consume, Tolerance, integrate, resolution

pytest.importorskip("sklearn")
from trainlight.demo.digits import PROBE_SIZE, load_digits_split

OLD_DEFAULTS = {"abs_tol": 1e-3, "rel_tol": 0.01, "max_intervals": 32}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These nets are tiny: a second intra-op thread only spins when the CPU is shared."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def relu_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )


class DigitsTraining:
    """A ReLU MLP on the digits, SGD with momentum 0.9, batch 64; the probe: 256 train digits."""

    def __init__(self, seed: int) -> None:
        self.data = load_digits_split()
        probe = self.data.train[:PROBE_SIZE]
        self.probe_x, self.probe_y = self.data.images[probe], self.data.labels[probe]
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.model = relu_mlp()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)

    def probe(self, model: nn.Module) -> torch.Tensor:
        return F.cross_entropy(model(self.probe_x.to(next(model.parameters()).dtype)), self.probe_y)

    def allocator(self, **settings: float | None) -> LossChangeAllocator:
        return LossChangeAllocator(
            self.model, self.probe, every=1, problems=Problems(), keep_allocation=True, **settings
        )

    def step(self, step: int, lcas: Sequence[LossChangeAllocator]) -> None:
        idx = self.data.train[torch.randint(0, len(self.data.train), (64,), generator=self.gen)]
        self.opt.zero_grad()
        F.cross_entropy(self.model(self.data.images[idx]), self.data.labels[idx]).backward()
        with ExitStack() as stack:
            for lca in lcas:
                stack.enter_context(lca.measure(step))
            self.opt.step()


def relative_error(lca: LossChangeAllocator) -> float:
    assert lca.last is not None
    return abs(lca.last.residual) / abs(lca.last.actual)


def test_a_relu_mlp_trained_with_momentum_is_grounded_on_99_percent_of_steps() -> None:
    """150 measured steps, default settings; the old defaults measure the same steps."""
    training = DigitsTraining(seed=0)
    new, old = training.allocator(), training.allocator(**OLD_DEFAULTS)
    errors: dict[str, list[float]] = {"new": [], "old": []}
    used: collections.Counter[int] = collections.Counter()
    for step in range(150):
        training.step(step, [new, old])
        errors["new"].append(relative_error(new))
        errors["old"].append(relative_error(old))
        assert new.last is not None
        used[new.last.intervals] += 1
        rows = new.collect() or []
        metrics = dict(zip(rows[0]["key"], rows[0]["value"], strict=True))
        assert metrics[INTERVALS] == new.last.intervals
        assert metrics[GROUNDED] == float(new.last.grounded)
    share = {k: sum(e <= 0.01 for e in v) / len(v) for k, v in errors.items()}
    print(f"\nwithin 1%: {share}; intervals used at the defaults: {dict(sorted(used.items()))}")
    assert share["new"] >= 0.99
    assert share["old"] < 0.95  # the training is one on which the old defaults were not grounded
    assert max(used) > 2  # refinement did the work


# -- per-layer values against a brute-force float64 Simpson --------------------------------------
def brute_force_layers(
    model: nn.Module,
    probe: Callable[[nn.Module], torch.Tensor],
    before: list[torch.Tensor],
    after: list[torch.Tensor],
    n: int,
) -> dict[str, float]:
    """Σ over each layer's parameters of (h/3·Σ_i w_i·g(θ_t + (i/n)·Δθ))·Δθ, all in float64."""
    ref = copy.deepcopy(model).double().eval()
    names = [name for name, _ in ref.named_parameters()]
    params = list(ref.parameters())
    deltas = [(a.double() - b.double()) for a, b in zip(after, before, strict=True)]
    averaged = [torch.zeros_like(p) for p in params]
    for i in range(n + 1):
        weight = 1.0 if i in (0, n) else (4.0 if i % 2 else 2.0)
        with torch.no_grad():
            for p, b, d in zip(params, before, deltas, strict=True):
                p.copy_(b.double() + (i / n) * d)
        for acc, g in zip(averaged, torch.autograd.grad(probe(ref), params), strict=True):
            acc += weight / (3.0 * n) * g
    layers: dict[str, float] = collections.defaultdict(float)
    for name, k, d in zip(names, averaged, deltas, strict=True):
        layers[name.rpartition(".")[0]] += float((k * d).sum())
    return dict(layers)


def test_per_layer_lca_equals_a_brute_force_float64_simpson_on_refined_steps() -> None:
    training = DigitsTraining(seed=0)
    lca = training.allocator()
    checked: list[int] = []  # the intervals of each step checked
    for step in range(150):
        before = [p.detach().clone() for p in training.model.parameters()]
        training.step(step, [lca])
        rows = lca.collect() or []
        assert lca.last is not None
        if lca.last.intervals < 4 and step % 30:
            continue  # every refined step, and an unrefined one now and then
        after = [p.detach().clone() for p in training.model.parameters()]
        layers = rows[1]
        got = {
            layer: value
            for layer, key, value in zip(
                layers["layer"], layers["key"], layers["value"], strict=True
            )
            if key == "lca"
        }
        want = brute_force_layers(training.model, training.probe, before, after, lca.last.intervals)
        assert got.keys() == want.keys()
        for layer, value in want.items():
            assert got[layer] == pytest.approx(value, rel=1e-4), (step, layer, lca.last.intervals)
        checked.append(lca.last.intervals)
    print(f"\nintervals of the steps checked: {checked}")
    assert len(checked) >= 10 and max(checked) >= 32  # well refined steps among them


# -- the tolerance rule --------------------------------------------------------------------------
def test_the_floor_is_eight_ulps_of_the_larger_probe_loss() -> None:
    assert resolution(torch.float32, 2.0, -3.0) == 8 * 2.0**-23 * 3.0
    assert resolution(torch.bfloat16, 1.0, 0.5) == 8 * 2.0**-7
    assert resolution(torch.float64, 0.0, 0.0) == 0.0


@pytest.mark.parametrize(
    ("tolerance", "actual", "floor", "bound"),
    [
        (Tolerance(), -0.5, 1e-9, 0.005),  # relative: 1% of |ΔL|
        (Tolerance(), 1e-8, 1e-7, 1e-7),  # below the loss's resolution: the floor
        (Tolerance(), 0.0, 0.0, 0.0),
        (Tolerance(abs_tol=1e-3), 0.02, 1e-7, 1e-3),  # the user's override, when looser
        (Tolerance(abs_tol=1e-3), 0.5, 1e-7, 0.005),
        (Tolerance(rel_tol=0.1, abs_tol=0.0), 0.5, 0.0, 0.05),
    ],
)
def test_the_bound_is_the_largest_of_relative_floor_and_override(
    tolerance: Tolerance, actual: float, floor: float, bound: float
) -> None:
    assert tolerance.bound(actual, floor) == pytest.approx(bound, rel=1e-12, abs=0)
    assert tolerance.accepts(actual, actual + bound * 0.999, floor)
    assert tolerance.accepts(actual, actual - bound * 0.999, floor)
    assert not tolerance.accepts(actual, actual - bound * 1.001 - 1e-300, floor)


def test_the_defaults() -> None:
    tolerance = Tolerance()
    assert (tolerance.abs_tol, tolerance.rel_tol, tolerance.max_intervals) == (None, 0.01, 128)


def sine_step(offset: float, dtype: torch.dtype, tolerance: Tolerance) -> int:
    """Intervals `integrate` uses for L(θ) = offset + sin(3θ) from θ = 0.1 to 0.95.

    Here ΔL = −0.00804 and Simpson's residual at 2 intervals is 1.46e-4: above 1% of |ΔL|
    (8.0e-5), below float32's resolution at a loss of 1000 (8·eps·1000 = 9.5e-4).
    """

    def evaluate(values: Sequence[torch.Tensor], consume: Consume) -> torch.Tensor:
        (theta,) = values
        consume(0, 3.0 * torch.cos(3.0 * theta))
        return (offset + torch.sin(3.0 * theta)).sum()

    before: list[torch.Tensor | None] = [torch.tensor([0.1], dtype=dtype)]
    result = integrate(evaluate, before, [torch.tensor([0.95], dtype=dtype)], tolerance)
    assert result.evaluations == result.intervals + 1
    assert math.isclose(result.actual, math.sin(2.85) - math.sin(0.3), abs_tol=2e-4)
    return result.intervals


def test_refinement_stops_at_the_probe_losss_resolution() -> None:
    assert sine_step(1000.0, torch.float32, Tolerance()) == 2  # 1.46e-4 is below float32's floor
    assert sine_step(0.0, torch.float32, Tolerance()) == 4  # at a loss near 1 it is not
    assert sine_step(1000.0, torch.float64, Tolerance()) == 4  # nor in float64


def test_abs_tol_overrides_the_relative_bound_when_looser() -> None:
    assert sine_step(0.0, torch.float64, Tolerance(abs_tol=1e-3)) == 2
    assert sine_step(0.0, torch.float64, Tolerance(abs_tol=1e-6)) == 4
    assert sine_step(0.0, torch.float64, Tolerance(max_intervals=2)) == 2
