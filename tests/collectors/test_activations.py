"""ActivationWatcher against a naive reference: plain Python loops over units and samples of the
activations recorded by a separate hook, window by window."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors import Monitor
from trainlight.collectors.problems import Problems
from trainlight.collectors.schema import VAR_HIST_KEY, VAR_HIST_LOG10, RunHeader, StoreLayout
from trainlight.collectors.signals import unit_stats
from trainlight.collectors.signals.activations import KEYS, ActivationWatcher
from trainlight.collectors.signals.unit_stats import (
    LayerSettings,
    Scratch,
    UnitStats,
    WindowState,
    merge_states,
)
from trainlight.collectors.smelu import SmeLU
from trainlight.collectors.writer import build_segment

Stats = dict[str, Any]  # KEYS -> float, and "hist" -> the act_var_hist counts
Parts = list[dict[str, list[Any]]] | None


class Recorder:
    """Copies of the outputs of the given modules on training passes: the reference's input."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.batches: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
        for name, module in modules.items():
            module.register_forward_hook(self._hook(name))

    def _hook(self, name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            if module.training and torch.is_grad_enabled():
                self.batches[name].append(output.detach().clone())  # no device sync here

        return record


def naive_hist(variances: list[float]) -> list[float]:
    """Units per bin by comparing with every edge: bin = how many edges are <= the variance."""
    edges = [10.0**e for e in VAR_HIST_LOG10]
    counts = [0.0] * (len(edges) + 1)
    for v in variances:
        if math.isfinite(v):
            counts[sum(v >= e for e in edges)] += 1
    return counts


def naive_windows(
    batches: list[torch.Tensor], *, window: int, tau: float = 0.0, unit_dim: int = 1
) -> list[Stats]:
    """The five window statistics, by looping over units and samples in plain Python."""
    out: list[Stats] = []
    pending: list[torch.Tensor] = []
    prev_dead: list[bool] | None = None
    for batch in batches:
        pending.append(batch.to("cpu", torch.float64))
        if sum(b.shape[0] for b in pending) < window:
            continue
        units = pending[0].shape[unit_dim]
        dead, variances, nonfinite = [], [], 0
        for u in range(units):
            per_batch = [b.select(unit_dim, u).flatten().tolist() for b in pending]
            fired = any(not any(map(math.isnan, vs)) and max(vs) > tau for vs in per_batch)
            nonfinite += sum(not all(map(math.isfinite, vs)) for vs in per_batch)
            values = [v for vs in per_batch for v in vs]
            mean = sum(values) / len(values)
            variances.append(sum((v - mean) ** 2 for v in values) / len(values))
            dead.append(not fired)
        undead = (
            0
            if prev_dead is None
            else sum(p and not d for p, d in zip(prev_dead, dead, strict=True))
        )
        out.append(
            {
                "dead_frac": sum(dead) / units,
                "undead": float(undead),
                "act_var_mean": sum(variances) / units,
                "low_var_frac": sum(v < 1e-8 for v in variances) / units,
                "nonfinite": float(nonfinite),
                "hist": naive_hist(variances),
            }
        )
        pending, prev_dead = [], dead
    return out


def scalars_of(parts: Parts) -> dict[str, list[Any]]:
    """The `layer_metrics` column set of one `collect()`."""
    assert parts is not None and len(parts) == 2
    return parts[0]


def by_layer(parts: Parts) -> dict[str, list[Stats]]:
    """Rows regrouped as {layer: [window stats and histogram, in order]}; checks the columns."""
    columns = scalars_of(parts)
    assert set(columns) == {"table", "step", "layer", "key", "value"}
    assert set(columns["table"]) == {"layer_metrics"}
    hists = histograms_of(parts)
    out: dict[str, list[Stats]] = {}
    for i in range(0, len(columns["step"]), len(KEYS)):
        assert tuple(columns["key"][i : i + len(KEYS)]) == KEYS
        values = columns["value"][i : i + len(KEYS)]
        stats = dict(zip(KEYS, values, strict=True))
        window = i // len(KEYS)  # one histogram row per window, in the same order
        assert (hists["step"][window], hists["layer"][window]) == (
            columns["step"][i],
            columns["layer"][i],
        )
        stats["hist"] = hists["values"][window]
        out.setdefault(columns["layer"][i], []).append(stats)
    return out


def histograms_of(parts: Parts) -> dict[str, list[Any]]:
    """The `arrays` column set of one `collect()`, checked against the act_var_hist contract."""
    assert parts is not None and len(parts) == 2
    columns = parts[1]
    assert set(columns) == {"table", "step", "key", "layer", "n_rows", "n_cols", "values"}
    n = len(columns["step"])
    assert columns["table"] == ["arrays"] * n and columns["key"] == [VAR_HIST_KEY] * n
    assert columns["n_rows"] == [1] * n and columns["n_cols"] == [len(VAR_HIST_LOG10) + 1] * n
    assert all(len(v) == len(VAR_HIST_LOG10) + 1 for v in columns["values"])
    return columns


def assert_same(got: list[Stats], want: list[Stats]) -> None:
    assert len(got) == len(want) >= 2
    for g, w in zip(got, want, strict=True):
        assert g["hist"] == w["hist"]  # unit counts: exact
        g, w = {k: g[k] for k in KEYS}, {k: w[k] for k in KEYS}
        assert g == pytest.approx(w, rel=1e-4, abs=1e-9, nan_ok=True)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.LeakyReLU(0.1), nn.Linear(5, 1)
    )


def cnn() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.GELU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 1),
    )


def train_passes(model: nn.Module, inputs: Iterator[torch.Tensor]) -> None:
    """Training passes (forward and backward); the weights stay as the test set them."""
    for x in inputs:
        model(x).sum().backward()


def watch(model: nn.Module, **kwargs: Any) -> tuple[ActivationWatcher, Problems]:
    problems = Problems()
    return ActivationWatcher(model, step_of=lambda: 0, problems=problems, **kwargs), problems


@pytest.mark.parametrize("row_values", [1 << 16, 12], ids=["one-fold", "fold-every-2-rows"])
def test_mlp_matches_the_naive_reference_across_windows(
    monkeypatch: pytest.MonkeyPatch, row_values: int
) -> None:
    monkeypatch.setattr(unit_stats, "ROW_BUFFER_VALUES", row_values)  # 6 units: 2 rows
    model = mlp()
    first = model[0]
    assert isinstance(first, nn.Linear)
    with torch.no_grad():  # unit 5 is stuck at 0.7: zero variance although it fires
        first.weight[5].zero_()
        first.bias[5] = 0.7
    recorder = Recorder({"1": model[1], "3": model[3]})
    watcher, problems = watch(model, window=8)
    for phase in range(4):  # window 1: units 0 and 1 dead; window 2: revived (undead)
        with torch.no_grad():
            first.bias[:2] = -100.0 if phase == 0 else 5.0
        train_passes(model, (torch.randn(2, 3) + phase for _ in range(4)))
    got = by_layer(watcher.collect())
    for layer in ("1", "3"):
        assert_same(got[layer], naive_windows(recorder.batches[layer], window=8))
    assert got["1"][0]["dead_frac"] == pytest.approx(2 / 6) and got["1"][1]["undead"] == 2.0
    assert got["1"][0]["low_var_frac"] == pytest.approx(3 / 6)  # two dead units and the stuck one
    assert problems.snapshot() == {}


def test_cnn_matches_the_naive_reference_with_uneven_batches() -> None:
    model = cnn()
    first = model[0]
    assert isinstance(first, nn.Conv2d)
    recorder = Recorder({"1": model[1], "3": model[3]})
    watcher, _ = watch(model, window=8)
    for phase in range(3):
        with torch.no_grad():
            first.bias[0] = -50.0 if phase == 0 else 3.0
        sizes = (4, 3, 2, 4) if phase == 1 else (4, 4)  # windows overshoot; batch sizes change
        train_passes(model, (torch.randn(n, 2, 6, 6) for n in sizes))
    got = by_layer(watcher.collect())
    for layer in ("1", "3"):
        assert_same(got[layer], naive_windows(recorder.batches[layer], window=8))
    assert got["1"][0]["dead_frac"] == pytest.approx(1 / 3) and got["1"][1]["undead"] == 1.0


def test_units_on_the_last_axis_for_sequence_models() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 5), nn.SiLU(), nn.Linear(5, 2), nn.ReLU6())
    recorder = Recorder({"1": model[1], "3": model[3]})
    watcher, _ = watch(model, window=4, unit_dim=-1)
    train_passes(model, (torch.randn(2, 7, 3) * 4 for _ in range(6)))
    got = by_layer(watcher.collect())
    for layer in ("1", "3"):
        assert_same(got[layer], naive_windows(recorder.batches[layer], window=4, unit_dim=-1))


def test_smelu_is_watched_by_class_name_with_a_tau_setting() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 6), SmeLU())
    recorder = Recorder({"1": model[1]})
    watcher, _ = watch(model, window=6, tau=0.5)
    train_passes(model, (torch.randn(3, 3) for _ in range(6)))
    got = by_layer(watcher.collect())
    assert_same(got["1"], naive_windows(recorder.batches["1"], window=6, tau=0.5))


def test_nonfinite_counts_unit_batches_and_nan_stays_in_the_stats() -> None:
    model = mlp()
    recorder = Recorder({"1": model[1], "3": model[3]})
    watcher, _ = watch(model, window=8)
    inputs = [torch.randn(4, 3) for _ in range(6)]
    inputs[2][1, 0] = math.nan  # window 2: one NaN sample, then one +Inf sample
    inputs[3][0, :] = math.inf
    for x in inputs:
        model(x)  # forward only: NaN would poison the weights through an optimizer step
    got = by_layer(watcher.collect())
    for layer in ("1", "3"):
        assert_same(got[layer], naive_windows(recorder.batches[layer], window=8))
        assert got[layer][0]["nonfinite"] == 0 and got[layer][1]["nonfinite"] > 0
        assert math.isnan(got[layer][1]["act_var_mean"])
        assert got[layer][2]["nonfinite"] == 0 and math.isfinite(got[layer][2]["act_var_mean"])


def test_bfloat16_outputs_accumulate_in_float32() -> None:
    model = mlp().to(torch.bfloat16)
    recorder = Recorder({"1": model[1], "3": model[3]})
    watcher, problems = watch(model, window=8)
    for _ in range(4):
        model(torch.randn(4, 3, dtype=torch.bfloat16))
    got = by_layer(watcher.collect())
    for layer in ("1", "3"):
        assert_same(got[layer], naive_windows(recorder.batches[layer], window=8))
    assert problems.snapshot() == {}


def test_eval_and_no_grad_passes_are_neither_observed_nor_counted() -> None:
    model = mlp()
    recorder = Recorder({"1": model[1]})
    steps = iter(range(1000))
    watcher = ActivationWatcher(model, step_of=lambda: next(steps), problems=Problems(), window=4)
    watcher.collect()
    for _ in range(4):
        model(torch.randn(4, 3))
        model.eval()
        model(torch.full((4, 3), 1e6))  # would change every statistic if it were observed
        model.train()
        with torch.no_grad():
            model(torch.full((4, 3), -1e6))
    got = by_layer(watcher.collect())
    assert_same(got["1"], naive_windows(recorder.batches["1"], window=4))
    assert len(recorder.batches["1"]) == 4
    assert watcher.gate.passes == 4


@pytest.mark.parametrize("every", [1, 3, 4])
def test_every_n_observes_exactly_every_nth_training_pass(every: int) -> None:
    model, step = mlp(), [0]
    watcher = ActivationWatcher(
        model, step_of=lambda: step[0], problems=Problems(), every=every, window=2
    )
    for step[0] in range(12):
        model(torch.randn(2, 3))  # each observed pass closes a window: its step is this pass
        with torch.no_grad():
            model(torch.randn(2, 3))
    columns = scalars_of(watcher.collect())
    steps = sorted(
        {s for s, layer in zip(columns["step"], columns["layer"], strict=True) if layer == "1"}
    )
    assert steps == list(range(0, 12, every))


def test_only_calls_inside_the_models_forward_count() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Linear(3, 4), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return checkpoint(self.block, x, use_reentrant=False)

    model = Net()
    watcher, problems = watch(model, window=2)
    train_passes(model, (torch.randn(2, 3) for _ in range(3)))  # backward recomputes the block
    model.block(torch.randn(2, 3))  # a direct call after the model's forward
    got = by_layer(watcher.collect())
    assert list(got) == ["block.1"] and len(got["block.1"]) == 3
    assert problems.snapshot() == {}


def test_remove_leaves_no_hooks_and_keeps_closed_windows() -> None:
    model = cnn()
    watcher, _ = watch(model, window=2)
    model(torch.randn(2, 2, 6, 6))
    watcher.remove()
    watcher.remove()  # idempotent
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert set(by_layer(watcher.collect())) == {"1", "3"}
    model(torch.randn(2, 2, 6, 6))
    assert watcher.collect() is None


def test_model_without_relu_warns_once_and_yields_no_rows(caplog: pytest.LogCaptureFixture) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    with caplog.at_level(logging.WARNING, logger="trainlight"):
        watcher, problems = watch(model)
        train_passes(model, (torch.randn(4, 3) for _ in range(3)))
    assert watcher.collect() is None
    assert problems.snapshot() == {"watch_no_activations": 1}
    assert len(caplog.records) == 1 and "no ReLU-family modules" in caplog.text
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class TupleOutput(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.relu(x),)


class First(nn.Module):
    def forward(self, t: tuple[torch.Tensor]) -> torch.Tensor:
        return t[0]


def test_a_failing_hook_never_raises_and_other_layers_go_on() -> None:
    smelu = type("SmeLU", (TupleOutput,), {})()  # watched by its name, returns a tuple
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), smelu, First())
    watcher, problems = watch(model, window=4)
    train_passes(model, (torch.randn(4, 3) for _ in range(3)))
    assert problems.count("watch_hook_failed:3") == 3
    assert set(by_layer(watcher.collect())) == {"1"}


def test_a_module_called_twice_per_pass_gets_a_series_per_call() -> None:
    act = nn.ReLU()
    torch.manual_seed(4)
    lin1, lin2 = nn.Linear(3, 4), nn.Linear(4, 6)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin1, self.lin2, self.act = lin1, lin2, act

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.lin2(self.act(self.lin1(x))))

    model = Net()
    outputs: list[torch.Tensor] = []
    act.register_forward_hook(lambda m, a, out: outputs.append(out.detach().clone()))
    watcher, problems = watch(model, window=4)
    train_passes(model, (torch.randn(2, 3) for _ in range(4)))
    got = by_layer(watcher.collect())
    assert set(got) == {"act", "act#2"}
    assert_same(got["act"], naive_windows(outputs[0::2], window=4))
    assert_same(got["act#2"], naive_windows(outputs[1::2], window=4))
    assert problems.snapshot() == {}


def test_training_a_watched_model_computes_the_same_gradients() -> None:
    plain, watched = mlp(), mlp()
    watched[1] = nn.ReLU(inplace=True)
    watch(watched, window=3)
    x = torch.randn(8, 3)
    for model in (plain, watched):
        model(x).square().sum().backward()
    for p, q in zip(plain.parameters(), watched.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert torch.equal(p.grad, q.grad)


def test_collect_races_the_training_loop_and_loses_nothing() -> None:
    model, step = mlp(), [0]
    watcher = ActivationWatcher(model, step_of=lambda: step[0], problems=Problems(), window=4)
    parts: list[list[dict[str, list[Any]]]] = []
    done = threading.Event()

    def flush() -> None:
        while not done.wait(0.0002):
            part = watcher.collect()
            if part:
                parts.append(part)

    thread = threading.Thread(target=flush)
    thread.start()
    for step[0] in range(300):
        model(torch.randn(4, 3))
    done.set()
    thread.join()
    parts.append(watcher.collect() or [{"step": [], "layer": []}] * 2)
    for kind, per_window in ((0, len(KEYS)), (1, 1)):  # layer_metrics rows, then histograms
        steps = [
            s
            for p in parts
            for s, layer in zip(p[kind]["step"], p[kind]["layer"], strict=True)
            if layer == "3"
        ]
        assert steps == [s for s in range(300) for _ in range(per_window)]


def test_a_full_queue_drops_the_oldest_windows_and_says_so() -> None:
    model, step = mlp(), [0]
    problems = Problems()
    watcher = ActivationWatcher(model, step_of=lambda: step[0], problems=problems, window=2)
    watcher.max_queued = 3
    for step[0] in range(5):
        model(torch.randn(2, 3))  # 2 layers x 5 windows = 10 windows
    columns = scalars_of(watcher.collect())
    assert sorted(set(zip(columns["step"], columns["layer"], strict=True))) == [
        (3, "3"),
        (4, "1"),
        (4, "3"),
    ]
    assert problems.count("watch_windows_dropped") == 7


def test_rows_fit_the_segment_schema() -> None:
    model = mlp()
    watcher, _ = watch(model, window=2, prefix="gen.")
    model(torch.randn(2, 3))
    parts = watcher.collect()
    assert parts is not None
    table = build_segment(parts, RunHeader(run_id="watch-0000abcd", seq=0, name="w"))
    rows = table.to_pylist()
    assert len(rows) == 2 * len(KEYS) + 2
    assert [r["table"] for r in rows] == ["layer_metrics"] * 2 * len(KEYS) + ["arrays"] * 2
    assert {r["layer"] for r in rows} == {"gen.1", "gen.3"}
    hists = [r for r in rows if r["table"] == "arrays"]
    assert all(r["key"] == VAR_HIST_KEY and (r["n_rows"], r["n_cols"]) == (1, 26) for r in hists)
    assert [sum(r["values"]) for r in hists] == [6.0, 5.0]  # every unit counted once


def test_bad_arguments_are_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
        watch(mlp(), every=0)
    with pytest.raises(ValueError, match="window must be an integer >= 1, got -5"):
        watch(mlp(), window=-5)


def test_watching_a_submodule_the_loop_does_not_call_is_reported() -> None:
    outer = nn.Sequential(mlp())
    watcher, problems = watch(outer)
    outer[0](torch.randn(2, 3))  # the loop calls the inner model directly
    assert watcher.collect() is None
    assert problems.count("watch_root_not_called") >= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_hooks_never_synchronise_and_match_the_reference() -> None:
    model = cnn().cuda()
    recorder = Recorder({"1": model[1], "3": model[3]})
    watcher, problems = watch(model, window=8)
    inputs = [torch.randn(4, 2, 6, 6, device="cuda") for _ in range(6)]
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x in inputs:
            model(x).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    got = by_layer(watcher.collect())
    for layer in ("1", "3"):
        assert_same(got[layer], naive_windows(recorder.batches[layer], window=8))
    assert problems.snapshot() == {}


def test_histogram_bins_follow_the_schema_edges_and_skip_nonfinite() -> None:
    edges = [10.0**e for e in VAR_HIST_LOG10]
    cases = [
        0.0,
        1e-12,
        edges[0],
        edges[0] * 0.999,
        edges[16],
        edges[16] * 0.999,
        0.5,
    ]  # 0.5: bin 16
    cases += [edges[-1], edges[-1] * 10, math.nan, math.inf, -math.inf]
    var = torch.tensor(cases, dtype=torch.float64)
    got = unit_stats.variance_histogram(var, unit_stats.var_edges(torch.device("cpu")))
    assert got.tolist() == naive_hist(cases)
    assert got[0] == 3 and got[1] == 1 and got[16:18].tolist() == [2, 1] and got[-1] == 2
    assert got.sum() == len(cases) - 3  # NaN and ±Inf variances are not counted


def test_histograms_spread_over_bins_match_the_reference_over_two_windows() -> None:
    torch.manual_seed(5)
    linear = nn.Linear(12, 12)
    model = nn.Sequential(linear, nn.ReLU())
    with torch.no_grad():  # unit u = relu(x_u * 10**(-5 + 7u/11)): variances from ~1e-10 to 1e4
        linear.weight.copy_(torch.diag(torch.logspace(-5, 2, 12)))
        linear.bias.zero_()
    recorder = Recorder({"1": model[1]})
    watcher, problems = watch(model, window=16)
    train_passes(model, (torch.randn(8, 12) for _ in range(4)))
    got = by_layer(watcher.collect())["1"]
    want = naive_windows(recorder.batches["1"], window=16)
    assert_same(got, want)
    assert all(sum(c > 0 for c in g["hist"]) >= 5 for g in got)  # spread over many bins
    assert problems.snapshot() == {}


def test_histogram_of_windows_merged_over_ranks_comes_from_the_merged_variances() -> None:
    settings = LayerSettings("layer", 10_000, 0.0, 1, 1e-8, False)
    generator = torch.Generator().manual_seed(6)
    rank0 = [torch.randn(8, 7, generator=generator) * 1e-3 for _ in range(2)]
    rank1 = [torch.randn(8, 7, generator=generator) * 30 + 5 for _ in range(2)]
    rank1[0][:, 6] = rank0[0][:, 6] = 0.25  # unit 6 is stuck on both ranks: variance 0

    def window(batches: list[torch.Tensor]) -> WindowState:
        stats = UnitStats(settings, 7, batches[0], Scratch())
        for batch in batches:
            stats.update(batch)
        return stats.take()

    site = UnitStats(settings, 7, rank0[0], Scratch())
    merged = site.finish(merge_states([window(rank0), window(rank1)]))[len(KEYS) :]
    alone = site.finish(window(rank0))[len(KEYS) :]
    data = torch.cat(rank0 + rank1).double()
    variances = [float(((c - c.mean()) ** 2).mean()) for c in data.unbind(1)]
    assert merged.tolist() == naive_hist(variances)
    assert merged.tolist() != alone.tolist()  # rank 0 alone sees much smaller variances


def test_histogram_rows_reach_the_store(tmp_path: Path) -> None:
    model = mlp()
    recorder = Recorder({"1": model[1], "3": model[3]})
    with Monitor(run="hist", store=str(tmp_path), flush_interval=0.2) as mon:
        mon.watch(model, every=1, window=8)
        for step in range(8):
            mon.log(step, loss=0.0)
            model(torch.randn(4, 3) * (step + 1)).sum().backward()
    store = Store(StoreLayout.resolve(tmp_path))
    try:
        Ingester(store).ingest_pending()
        with store.read() as cur:
            rows = cur.execute(
                """SELECT layer, step, n_rows, n_cols, "values" FROM arrays
                WHERE key = ? ORDER BY layer, step""",
                [VAR_HIST_KEY],
            ).fetchall()
    finally:
        store.close()
    for layer in ("1", "3"):
        stored = [r for r in rows if r[0] == layer]
        want = naive_windows(recorder.batches[layer], window=8)
        assert [r[1] for r in stored] == [1, 3, 5, 7] and len(want) == 4
        assert all(r[2:4] == (1, 26) for r in stored)
        assert [list(r[4]) for r in stored] == [w["hist"] for w in want]
