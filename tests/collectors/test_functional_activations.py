"""watch() on activations written as function calls and as look-alike classes, against the naive
per-unit reference of test_activations.py: the same model spelled with modules or with
F.relu/torch.relu/F.relu_/torch.relu_/Tensor.relu/F.leaky_relu gives the same rows."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_hooks

from tests.collectors.test_activations import (
    Recorder,
    assert_same,
    by_layer,
    naive_windows,
    train_passes,
    watch,
)
from trainlight.collectors.signals.activation_kinds import module_kind, relu_like

Act = Callable[[torch.Tensor], torch.Tensor]
RELU_SPELLINGS: dict[str, Act] = {
    "F.relu": F.relu,
    "torch.relu": torch.relu,
    "F.relu_": F.relu_,
    "torch.relu_": torch.relu_,
    "Tensor.relu": torch.Tensor.relu,
    "F.relu(inplace)": lambda x: F.relu(x, inplace=True),
}


class Net(nn.Module):
    """A three-layer MLP whose two activations are modules, or calls of the given functions."""

    def __init__(self, relu: Act | None = None, leaky: Act | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2, self.c3 = nn.Linear(3, 6), nn.Linear(6, 5), nn.Linear(5, 1)
        self.act1 = nn.ReLU() if relu is None else None
        self.act2 = nn.LeakyReLU(0.2) if leaky is None else None
        self.relu, self.leaky = relu, leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.c1(x)) if self.act1 is not None else self.relu(self.c1(x))  # type: ignore[misc]
        h = self.act2(self.c2(h)) if self.act2 is not None else self.leaky(self.c2(h))  # type: ignore[misc]
        return self.c3(h)


def run_phases(model: Net) -> None:
    """Two units dead in the first windows, revived after (undead), one stuck unit."""
    with torch.no_grad():
        model.c1.weight[5].zero_()
        model.c1.bias[5] = 0.7
    for phase in range(4):
        with torch.no_grad():
            model.c1.bias[:2] = -100.0 if phase == 0 else 5.0
        generator = torch.Generator().manual_seed(phase)
        train_passes(model, (torch.randn(2, 3, generator=generator) + phase for _ in range(4)))


@pytest.mark.parametrize("spelling", list(RELU_SPELLINGS))
def test_functional_and_module_spellings_give_the_same_rows(spelling: str) -> None:
    modules = Net()
    recorder = Recorder({"act1": modules.act1, "act2": modules.act2})  # type: ignore[dict-item]
    module_watcher, _ = watch(modules, window=8)
    run_phases(modules)
    want = by_layer(module_watcher.collect())
    functional = Net(RELU_SPELLINGS[spelling], lambda x: F.leaky_relu(x, 0.2))
    watcher, problems = watch(functional, window=8)
    run_phases(functional)
    got = by_layer(watcher.collect())
    assert set(got) == {"c1→relu", "c2→leaky_relu"} and set(want) == {"act1", "act2"}
    for fn_layer, mod_layer in (("c1→relu", "act1"), ("c2→leaky_relu", "act2")):
        assert got[fn_layer] == want[mod_layer]  # bit-identical
        assert_same(got[fn_layer], naive_windows(recorder.batches[mod_layer], window=8))
    assert got["c1→relu"][0]["dead_frac"] == pytest.approx(2 / 6)
    assert got["c1→relu"][1]["undead"] == 2.0
    assert problems.snapshot() == {}


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv, self.bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.drop(self.bn(self.conv(x))))  # Dropout passes its input's producer on
        return F.gelu(h - 0.5).mean((2, 3)) + F.relu(h).mean((2, 3))  # no module: caller#k


def test_conv_channels_and_fallback_names_by_caller_and_ordinal() -> None:
    model = ConvNet()
    outputs: list[torch.Tensor] = []
    model.bn.register_forward_hook(lambda m, a, out: outputs.append(out.detach().clamp(min=0)))
    watcher, _ = watch(model, window=8)
    train_passes(model, (torch.randn(4, 2, 6, 6) for _ in range(6)))
    got = by_layer(watcher.collect())
    assert set(got) == {"bn→relu", "ConvNet→gelu#2", "ConvNet→relu#3"}
    assert_same(got["bn→relu"], naive_windows(outputs, window=8))
    assert [sum(w["hist"]) for w in got["ConvNet→gelu#2"]] == [3.0] * 3  # channels: unit_dim 1


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.GELU()  # calls F.gelu inside: counted once, as the module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(F.relu(self.fc(F.relu(self.fc(x)))))


def test_repeated_names_are_numbered_and_module_calls_are_not_counted_twice() -> None:
    watcher, _ = watch(Twice(), window=2)
    train_passes(watcher.tracker.root, (torch.randn(2, 4) for _ in range(2)))
    assert set(by_layer(watcher.collect())) == {"fc→relu", "fc→relu#2", "act"}


class GELUActivation(nn.Module):  # look-alikes of Hugging Face's activation classes
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x)


class NewGELUActivation(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))
        return 0.5 * x * (1.0 + torch.tanh(inner))


class QuickGELUActivation(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SigmoidActivation(nn.Module):  # an activation, but not ReLU-like
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class ScaledAct(nn.Module):  # named like one, computes a scaling
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def test_activation_classes_are_recognised_by_what_they_compute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for relu_family in (GELUActivation, NewGELUActivation, QuickGELUActivation, nn.Softplus):
        assert relu_like(relu_family()), relu_family
    for other in (nn.Tanh, nn.Sigmoid, nn.Identity, ScaledAct, SigmoidActivation):
        assert not relu_like(other()), other
    dropout, norm = nn.Dropout(0.5), nn.BatchNorm1d(241, affine=False)
    state = torch.random.get_rng_state()
    assert not relu_like(dropout) and not relu_like(norm)  # eval: identity, a fixed affine map
    assert torch.equal(torch.random.get_rng_state(), state) and dropout.training
    assert norm.num_batches_tracked == 0 and torch.equal(norm.running_mean, torch.zeros(241))
    assert relu_like(nn.RReLU())  # random in training; its mean slope in eval
    assert module_kind(nn.Linear(2, 2)) is None  # has parameters: never probed
    model = nn.Sequential(
        nn.Linear(3, 8), NewGELUActivation(), nn.Linear(8, 8), QuickGELUActivation(),
        nn.Linear(8, 8), GELUActivation(), SigmoidActivation(), ScaledAct(), nn.Tanh(),
    )  # fmt: skip
    recorder = Recorder({"1": model[1], "3": model[3], "5": model[5]})
    with caplog.at_level(logging.WARNING, logger="trainlight"):
        watcher, problems = watch(model, window=4)
        train_passes(model, (torch.randn(2, 3) for _ in range(4)))
    got = by_layer(watcher.collect())
    assert set(got) == {"1", "3", "5"}  # GELUActivation's own F.gelu is not counted again
    for layer in got:
        assert_same(got[layer], naive_windows(recorder.batches[layer], window=4))
    assert problems.snapshot() == {"watch_unrecognised_activations": 1}
    assert len(caplog.records) == 1
    assert "6 (SigmoidActivation), 7 (ScaledAct)" in caplog.text and "Tanh" not in caplog.text


def test_unobserved_passes_run_without_mode_or_hooks() -> None:
    depths: list[tuple[int, int]] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hooks = len(module_hooks._global_forward_hooks)
            depths.append((torch._C._len_torch_function_stack(), hooks))
            return F.relu(self.fc(x))

    model = Probe()
    watcher, problems = watch(model, every=3, window=2)
    train_passes(model, (torch.randn(2, 3) for _ in range(6)))
    assert [d > 0 and h > 0 for d, h in depths] == [True, False, False] * 2
    assert torch._C._len_torch_function_stack() == 0 and not module_hooks._global_forward_hooks
    assert len(by_layer(watcher.collect())["fc→relu"]) == 2
    with pytest.raises(RuntimeError, match="boom"):  # a forward that raises: all taken down
        model.fc.register_forward_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("boom")))
        train_passes(model, iter([torch.randn(2, 3)]))
    assert torch._C._len_torch_function_stack() == 0 and not module_hooks._global_forward_hooks
    assert problems.snapshot() == {}


class SeqNet(nn.Module):
    """[batch, seq, features] through Linear -> ReLU module; a function call on a rare branch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.fc, self.act = nn.Linear(4, 5), nn.ReLU()
        self.rare = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc(x))
        return F.relu(h) if self.rare else h


def test_a_model_without_function_calls_is_tracked_only_to_rediscover_them() -> None:
    """After its first passes, a module-only model's passes run without the mode or module hooks
    (they cost as much as the statistics), keep the units' axis the tracked passes found, and a
    function call on a branch taken later is found at the next rediscovery pass."""
    from trainlight.collectors.signals.activations import DISCOVERY_PASSES, REDISCOVER_EVERY

    model = SeqNet()
    tracked: list[bool] = []
    model.fc.register_forward_hook(
        lambda *_: tracked.append(bool(module_hooks._global_forward_hooks))
    )
    watcher, problems = watch(model, window=3 * 7)
    passes = REDISCOVER_EVERY + 3
    for i in range(passes):
        model.rare = i >= DISCOVERY_PASSES + 1  # from just after discovery on
        train_passes(model, iter([torch.randn(3, 7, 4)]))
    want = [i < DISCOVERY_PASSES or i + 1 >= REDISCOVER_EVERY for i in range(passes)]
    assert tracked == want  # tracked from the rediscovery pass on: a call was seen there
    got = by_layer(watcher.collect())
    assert all(sum(w["hist"]) == 5.0 for w in got["act"])  # features (axis -1) all along
    assert len(got["act"]) == passes // 7
    assert list(watcher.tracker.sites) == ["SeqNet→relu#1"]  # found, its window begun
    assert problems.snapshot() == {}


def test_a_failing_functional_site_is_reported_and_training_goes_on() -> None:
    model = Net(torch.relu, F.silu)
    watcher, problems = watch(model, window=2)
    kind = module_kind(nn.ReLU())
    assert kind is not None
    hook = watcher.functional_site("c1→relu", kind)

    def fail(*args: object) -> None:
        raise RuntimeError("statistics failed")

    hook._observe = fail  # type: ignore[method-assign]
    train_passes(model, (torch.randn(2, 3) for _ in range(4)))
    assert set(by_layer(watcher.collect())) == {"c2→silu"}
    assert problems.count("watch_hook_failed:c1→relu") == 4


class Hinge(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - F.relu(self.fc(x)).sum(1))  # a per-sample hinge: 1-d, no units


def test_one_dimensional_activation_calls_are_no_layer_and_raise_no_warning() -> None:
    model = Hinge()
    watcher, problems = watch(model, window=2)
    train_passes(model, (torch.randn(2, 3) for _ in range(2)))
    assert set(by_layer(watcher.collect())) == {"fc→relu"}
    assert problems.snapshot() == {}


class Six(nn.Module):
    def __init__(self, act: Act | nn.Module) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.fc, self.act = nn.Linear(3, 5), act
        with torch.no_grad():
            self.fc.weight.mul_(8)  # outputs beyond 6 too

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(self.act(self.fc(x)))  # hardtanh(-1, 1): no ReLU, never a row


def test_relu6_spellings_agree_and_other_hardtanh_bounds_are_no_relu() -> None:
    rows = {}
    for name, act in (
        ("module", nn.ReLU6()),
        ("F.relu6", F.relu6),
        ("F.hardtanh(0, 6)", lambda x: F.hardtanh(x, 0.0, 6.0)),
    ):
        model = Six(act)
        watcher, problems = watch(model, window=4)
        train_passes(
            model, (torch.randn(2, 3, generator=torch.Generator().manual_seed(i)) for i in range(8))
        )
        got = by_layer(watcher.collect())
        assert len(got) == 1 and problems.snapshot() == {}
        rows[name] = next(iter(got.items()))
    assert rows["module"][0] == "act" and rows["F.relu6"][0] == "fc→relu6"
    assert rows["module"][1] == rows["F.relu6"][1] == rows["F.hardtanh(0, 6)"][1]
