"""Loss slices against naive references: filter norms by loops, losses from moved weight copies,
and the direction against the authors' own normalisation (tests/support/net_plotter_reference.py)
at every slice of a real training whose weights grow."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from tests.support.net_plotter_reference import (
    get_random_weights,
    normalize_directions_for_weights,
)
from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.landscape import (
    LossSlicer,
    alphas_for,
    filter_normalised_direction,
    sharpness,
)
from trainlight.collectors.signals.landscape_probe import (
    SEED_KEY,
    SHARPNESS_KEY,
    SLICE_KEY,
    SPAN_KEY,
    LandscapeProbe,
)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 4 * 4, 3),
    )


def test_each_filter_of_the_direction_has_its_weight_filters_norm_and_1d_params_are_zero() -> None:
    model = small_cnn()
    direction = filter_normalised_direction(list(model.named_parameters()), seed=3)
    for name, param in model.named_parameters():
        weight = param.detach()
        d = direction[name]
        assert d.shape == weight.shape
        if weight.dim() < 2:
            assert torch.count_nonzero(d) == 0, name
            continue
        for i in range(weight.shape[0]):  # naive: one filter at a time
            w_norm = math.sqrt(sum(float(v) ** 2 for v in weight[i].flatten()))
            d_norm = math.sqrt(sum(float(v) ** 2 for v in d[i].flatten()))
            assert d_norm == pytest.approx(w_norm, rel=1e-5), (name, i)


def test_the_direction_is_fixed_by_the_seed() -> None:
    params = list(small_cnn().named_parameters())
    a = filter_normalised_direction(params, seed=1)
    b = filter_normalised_direction(params, seed=1)
    c = filter_normalised_direction(params, seed=2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_slice_losses_equal_a_naive_copy_of_the_model_with_moved_weights() -> None:
    model = small_cnn()
    x = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(6))
    loss_fn = nn.CrossEntropyLoss()
    slicer = LossSlicer(model, lambda m: loss_fn(m(x), y), points=7, span=0.5, seed=4)
    result = slicer.slice()
    for alpha, loss in zip(result.alphas, result.losses, strict=True):
        naive = copy.deepcopy(model).eval()
        with torch.no_grad():
            for name, p in naive.named_parameters():
                p.add_(alpha * slicer.direction[name])
            expected = loss_fn(naive(x), y).item()
        assert loss == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_slicing_leaves_weights_buffers_grads_modes_and_rng_untouched() -> None:
    model = small_cnn().train()
    model[5].eval()  # a deliberately frozen submodule stays frozen
    x = torch.randn(8, 1, 6, 6)
    before = copy.deepcopy(model.state_dict())
    flags = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    slicer = LossSlicer(model, lambda m: m(x).square().mean(), points=5, span=1.0)
    slicer.slice()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())


def test_sharpness_is_the_curvature_of_a_parabola_and_nan_propagates() -> None:
    alphas = alphas_for(21, 1.0)
    assert sharpness(alphas, [3.0 * a * a - a + 2.0 for a in alphas]) == pytest.approx(6.0)
    assert sharpness(alphas, [0.0] * 21) == pytest.approx(0.0, abs=1e-12)
    broken = [1.0] * 21
    broken[10] = math.nan
    assert math.isnan(sharpness(alphas, broken))


def test_a_nan_probe_loss_is_recorded_not_raised() -> None:
    model = nn.Linear(3, 1)
    slicer = LossSlicer(model, lambda m: m(torch.ones(2, 3)).sum() * math.nan, points=5)
    result = slicer.slice()
    assert all(math.isnan(v) for v in result.losses)
    assert math.isnan(result.sharpness)


@pytest.mark.parametrize(("points", "span"), [(4, 1.0), (3, 1.0), (21, 0.0), (21, math.inf)])
def test_bad_points_or_span_are_refused_with_the_value(points: int, span: float) -> None:
    with pytest.raises(ValueError, match=r"points|span"):
        alphas_for(points, span)


def test_alphas_are_symmetric_with_zero_in_the_middle() -> None:
    alphas = alphas_for(21, 2.0)
    assert alphas[10] == 0.0 and alphas[0] == -2.0 and alphas[-1] == 2.0


def test_the_probe_slices_on_its_steps_only_and_describes_the_axis_once() -> None:
    model = nn.Linear(3, 1)
    x = torch.randn(8, 3)
    probe = LandscapeProbe(
        model, lambda m: m(x).square().mean(), Problems(), every=4, points=5, seed=12
    )
    for step in range(9):
        probe.maybe(step)
    probe.maybe(8)  # the same step again: no second slice
    parts = probe.collect()
    assert parts is not None
    metrics, arrays = parts
    assert arrays["step"] == [0, 4, 8] and arrays["key"] == [SLICE_KEY] * 3
    assert arrays["n_cols"] == [5] * 3 and all(len(v) == 5 for v in arrays["values"])
    keys = list(zip(metrics["step"], metrics["key"], strict=True))
    assert (0, SPAN_KEY) in keys and sum(k == SPAN_KEY for _, k in keys) == 1
    seeds = [v for k, v in zip(metrics["key"], metrics["value"], strict=True) if k == SEED_KEY]
    assert seeds == [12.0]
    assert sum(k == SHARPNESS_KEY for _, k in keys) == 3
    assert probe.collect() is None


def test_a_failing_probe_is_counted_not_raised() -> None:
    def broken(_: nn.Module) -> torch.Tensor:
        raise RuntimeError("probe batch gone")

    problems = Problems()
    probe = LandscapeProbe(nn.Linear(2, 1), broken, problems, every=1, points=5)
    probe.maybe(0)
    assert probe.collect() is None
    assert problems.count("landscape_failed") == 1


def reference_direction(raw: list[torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The authors' normalisation of a copy of `raw` to the model's current weights."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    weights = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    direction = [d.clone() for d in raw]
    normalize_directions_for_weights(direction, weights, norm="filter", ignore="biasbn")
    return dict(zip(names, direction, strict=True))


def filter_norms(tensor: torch.Tensor) -> list[float]:
    """Naive per-filter norms: one output filter at a time, in float64."""
    return [float(tensor[i].double().norm()) for i in range(tensor.shape[0])]


def test_the_seeds_direction_is_the_authors_filter_normalisation_of_the_seeds_draw() -> None:
    model = small_cnn()
    params = list(model.named_parameters())
    ours = filter_normalised_direction(params, seed=9)
    raw = get_random_weights([p for _, p in params], torch.Generator().manual_seed(9))
    theirs = reference_direction(raw, model)
    for name, d in ours.items():
        torch.testing.assert_close(d, theirs[name], rtol=1e-6, atol=1e-9)


def test_at_every_slice_the_direction_has_the_current_weights_filter_norms() -> None:
    """A real training whose filters grow: each slice renormalises the run's one random draw
    to the weights of that step (the authors' rule), and its losses move along that direction."""
    model = small_cnn()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(96, 1, 6, 6, generator=generator)
    y = (x[:, 0, 2:4, 2:4].sum((1, 2)) > 0).long() + (x[:, 0, 0, 0] > 1).long()
    loss_fn = nn.CrossEntropyLoss()
    slicer = LossSlicer(model, lambda m: loss_fn(m(x[:32]), y[:32]), points=5, span=0.5, seed=7)
    trainable = [p for p in model.parameters() if p.requires_grad]
    raw = get_random_weights(trainable, torch.Generator().manual_seed(7))
    first = {n: filter_norms(p.detach()) for n, p in model.named_parameters() if p.dim() > 1}
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for step in range(61):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if step % 20:
            continue
        result = slicer.slice()
        expected = reference_direction(raw, model)
        for name, weight in model.named_parameters():
            torch.testing.assert_close(slicer.direction[name], expected[name], rtol=1e-5, atol=0)
            if weight.dim() > 1:
                got, want = filter_norms(slicer.direction[name]), filter_norms(weight.detach())
                assert got == pytest.approx(want, rel=1e-5), (step, name)
        naive = copy.deepcopy(model).eval()
        with torch.no_grad():
            for name, p in naive.named_parameters():
                p.add_(result.alphas[0] * expected[name])
            assert result.losses[0] == pytest.approx(loss_fn(naive(x[:32]), y[:32]).item(), 1e-5)
    grown = max(
        max(abs(a / b - 1) for a, b in zip(filter_norms(p.detach()), first[n], strict=True))
        for n, p in model.named_parameters()
        if p.dim() > 1
    )
    assert grown > 0.25  # the weights did move: a direction normalised once would be off


@pytest.mark.parametrize("seed", [-1, 2**53 - 1, True, 1.0])
def test_a_seed_that_would_not_survive_the_store_is_refused(seed: object) -> None:
    with pytest.raises(ValueError, match="landscape seed"):
        LossSlicer(nn.Linear(2, 1), lambda m: m(torch.ones(1, 2)).sum(), seed=seed)  # type: ignore[arg-type]
