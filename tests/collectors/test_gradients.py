"""Per-layer gradient norms and update ratios (`watch`): against a per-parameter Python loop,
under optimisers, gradient accumulation, hand-written updates, autocast and GradScaler, eval and
no_grad passes; hooks gone after removal; no parameter copy left after a step."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.gradients import MANUAL, OPTIMISER, GradientWatcher
from trainlight.collectors.wire import GRAD_NORM, UPDATE_RATIO

Reference = dict[tuple[int, str], tuple[float, float]]


def model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)
    )


def naive(
    net: nn.Module, grads: dict[str, torch.Tensor], before: dict[str, torch.Tensor]
) -> dict[str, tuple[float, float]]:
    """(‖g‖, ‖Δθ‖/‖θ‖) per layer, one parameter at a time in Python."""
    out = {}
    params = dict(net.named_parameters())
    for layer in {name.rpartition(".")[0] for name in params}:
        names = [n for n in params if n.rpartition(".")[0] == layer]
        g = sum(float(grads[n].double().pow(2).sum()) for n in names)
        d = sum(float((params[n].detach() - before[n]).double().pow(2).sum()) for n in names)
        w = sum(float(before[n].double().pow(2).sum()) for n in names)
        out[layer] = (math.sqrt(g), math.sqrt(d / w))
    return out


def measured(watcher: GradientWatcher) -> Reference:
    rows = watcher.collect() or {"step": [], "layer": [], "key": [], "value": []}
    found: dict[tuple[int, str], dict[str, float]] = {}
    for step, layer, key, value in zip(
        rows["step"], rows["layer"], rows["key"], rows["value"], strict=True
    ):
        found.setdefault((step, layer), {})[key] = value
    return {k: (v[GRAD_NORM], v.get(UPDATE_RATIO, math.nan)) for k, v in found.items()}


def train(
    update: Callable[[nn.Module], None] | str,
    *,
    steps: int = 9,
    every: int = 3,
    micro: int = 1,
    autocast: bool = False,
) -> tuple[GradientWatcher, Reference, Reference]:
    """A loop logging step s after its update; returns (watcher, measured, naive) for the
    observed steps. `update`: an optimiser's name, or a hand-written update function."""
    net = model()
    opt = None
    if update == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    elif update == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    clock = {"step": -1}  # the latest logged step
    watcher = GradientWatcher(net, step_of=lambda: clock["step"], problems=Problems(), every=every)
    expected = {}
    for step in range(steps):
        clock["step"] = step - 1
        x = torch.randn(4 * micro, 8)
        for part in x.split(4):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = net(part).float().pow(2).mean() / micro
            loss.backward()
        with torch.no_grad():  # a validation pass between backward and step never counts
            net(torch.randn(2, 8))
        grads = {n: p.grad.detach().clone() for n, p in net.named_parameters()}
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        if opt is not None:
            opt.step()
            opt.zero_grad()
        else:
            assert callable(update)
            update(net)
        passes = range(step * micro, (step + 1) * micro)  # the gate counts forward passes
        if any(n % every == 0 for n in passes):
            expected |= {(step, layer): v for layer, v in naive(net, grads, before).items()}
    net(torch.randn(2, 8))  # the next training pass closes a hand-written update's last step
    return watcher, measured(watcher), expected


def assert_close(got: Reference, want: Reference) -> None:
    assert got.keys() == want.keys()
    for key, (g, r) in want.items():
        assert got[key][0] == pytest.approx(g, rel=1e-4), key
        assert got[key][1] == pytest.approx(r, rel=1e-4), key


@pytest.mark.parametrize("optimiser", ["sgd", "adam"])
@pytest.mark.parametrize("micro", [1, 3])
def test_optimiser_steps_match_the_per_parameter_loop(optimiser: str, micro: int) -> None:
    watcher, got, want = train(optimiser, micro=micro)
    assert watcher.updates == OPTIMISER
    assert_close(got, want)
    assert {step for step, _ in got} == ({0, 3, 6} if micro == 1 else set(range(9)))


def hand_written(net: nn.Module) -> None:
    for p in net.parameters():
        p.data.add_(p.grad, alpha=-0.1)  # type: ignore[arg-type]
        p.grad = None


def test_a_hand_written_update_is_caught_at_the_next_training_pass() -> None:
    watcher, got, want = train(hand_written, steps=12)
    assert watcher.updates == MANUAL
    assert_close(got, want)


def test_bf16_autocast_is_measured_on_the_float32_parameters() -> None:
    _, got, want = train("adam", autocast=True)
    assert_close(got, want)


def test_gradscaler_norms_are_of_the_unscaled_gradient_and_a_skipped_step_records_nothing() -> None:
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    watcher = GradientWatcher(net, step_of=lambda: -1, problems=Problems(), every=1)
    loss = net(torch.randn(4, 8)).pow(2).mean()
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    true = {n: p.grad.detach().clone() for n, p in net.named_parameters()}
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    scaler.step(opt)
    scaler.update()
    want = {(0, layer): v for layer, v in naive(net, true, before).items()}
    opt.zero_grad()
    assert_close(measured(watcher), want)
    loss = net(torch.randn(4, 8)).pow(2).mean() * math.inf  # an overflow: the scaler skips
    scaler.scale(loss).backward()
    scaler.step(opt)
    net(torch.randn(4, 8))
    assert measured(watcher) == {}


def test_no_copy_outlives_the_step_and_remove_takes_every_hook_away() -> None:
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    watcher = GradientWatcher(net, step_of=lambda: -1, problems=Problems(), every=1)
    for _ in range(2):
        net(torch.randn(4, 8)).pow(2).mean().backward()
        opt.step()
        assert watcher._current is None  # the step's copies are freed
    watcher.remove()
    assert not net._forward_pre_hooks and not net._forward_hooks
    assert all(not p._post_accumulate_grad_hooks for p in net.parameters())  # type: ignore[attr-defined]
    net(torch.randn(4, 8)).pow(2).mean().backward()
    opt.step()
    assert watcher.collect() is None or not watcher.collect()


def test_an_optimiser_of_another_model_is_ignored() -> None:
    net, other = model(), nn.Linear(3, 3)
    opt, other_opt = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (net, other))
    watcher = GradientWatcher(net, step_of=lambda: -1, problems=Problems(), every=1)
    net(torch.randn(4, 8)).pow(2).mean().backward()
    other(torch.randn(2, 3)).sum().backward()
    other_opt.step()  # not ours: the step stays open
    assert watcher._current is not None
    opt.step()
    assert {layer for _, layer in measured(watcher)} == {"0", "2", "4"}


@pytest.mark.parametrize("pass_opens", ["before the step", "inside the closure"])
def test_a_step_whose_closure_computes_the_gradients_is_measured_after_it(pass_opens: str) -> None:
    """Lightning's automatic optimisation (and LBFGS): `opt.step(closure)` runs the forward and
    backward inside the step, and the loop marks each training pass itself (`manual_passes`:
    Lightning never calls the module's forward). The pass may open before the step or inside
    its closure (Lightning's wrapped training_step): θ is copied before it moves either way."""
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    clock = {"step": -1}
    watcher = GradientWatcher(
        net, step_of=lambda: clock["step"], problems=Problems(), every=2, manual_passes=True
    )
    expected = {}
    for step in range(6):
        clock["step"] = step - 1
        x = torch.randn(4, 8)

        def closure(x: torch.Tensor = x) -> torch.Tensor:
            if pass_opens == "inside the closure":
                watcher.root_pre(net, ())  # Lightning: the wrapped training_step begins
            loss = net(x).pow(2).mean()
            watcher.root_post(net, (), None)  # Lightning: on_before_backward
            opt.zero_grad()
            loss.backward()
            return loss

        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        if pass_opens == "before the step":
            watcher.root_pre(net, ())
        opt.step(closure)
        grads = {n: p.grad.detach().clone() for n, p in net.named_parameters()}  # type: ignore[union-attr]
        if step % 2 == 0:
            expected |= {(step, layer): v for layer, v in naive(net, grads, before).items()}
    assert watcher.updates == OPTIMISER
    assert_close(measured(watcher), expected)
    assert {step for step, _ in expected} == {0, 2, 4}
