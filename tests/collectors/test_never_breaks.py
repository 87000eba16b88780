"""Training never breaks because of trainlight (issue 7).

Each case runs a short real training with a Monitor in it and checks the same four things: the
training finishes, nothing is raised into it, exactly one clear warning is logged, and a counter
of what was skipped (`trainlight/problems/<kind>`) reaches the store through the real ingester.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors import Monitor
from trainlight.collectors.problems import PROBLEMS_KEY
from trainlight.collectors.schema import StoreLayout
from trainlight.collectors.signals import functional_watch, unit_stats
from trainlight.collectors.wire import DEAD_FRAC, GRAD_NORM

Batch = Callable[[int], torch.Tensor]
STEPS = 40


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1)
    )


def eight_samples(step: int) -> torch.Tensor:
    return torch.randn(8, 4)


def train(
    mon: Monitor,
    model: nn.Module,
    batch: Batch = eight_samples,
    *,
    context: Callable[[], AbstractContextManager[object]] = nullcontext,
    steps: int = STEPS,
    between: Callable[[int], None] = lambda step: None,
) -> int:
    """A real training loop with the Monitor in it; returns the number of steps it completed."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    done = 0
    for step in range(steps):
        with context():
            loss = model(batch(step)).float().pow(2).sum()  # an empty batch: 0, not NaN
        if loss.requires_grad:
            opt.zero_grad()
            loss.backward()
            opt.step()
        mon.log(step, loss=loss)
        between(step)
        done += 1
    return done


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def stored_problems(store: Path, run_id: str) -> dict[str, float]:
    """The run's latest `trainlight/problems...` counts, ingested as `trainlight serve` would."""
    db = Store(StoreLayout.resolve(store))
    try:
        Ingester(db).ingest_pending()
        with db.read() as cur:
            rows = cur.execute(
                "SELECT key, arg_max(value, step) FROM metrics "
                "WHERE run_id = ? AND starts_with(key, ?) GROUP BY key",
                [run_id, PROBLEMS_KEY],
            ).fetchall()
    finally:
        db.close()
    return {str(k): float(v) for k, v in rows}


def stored_count(store: Path, run_id: str, sql: str) -> int:
    db = Store(StoreLayout.resolve(store))
    try:
        Ingester(db).ingest_pending()
        with db.read() as cur:
            row = cur.execute(sql, [run_id]).fetchone()
    finally:
        db.close()
    assert row is not None
    return int(row[0])


@pytest.fixture
def caplog_warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, "trainlight"):
        yield caplog


# -- hooks ------------------------------------------------------------------------------------
class TupleReLU(nn.ReLU):
    """A user's ReLU subclass whose output is a tuple: our hook cannot measure it."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:  # type: ignore[override]
        return (super().forward(x),)


class TupleMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 1)
        self.act1, self.act2 = TupleReLU(), TupleReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.act2(self.act1(self.a(x))[0])[0])


def test_a_user_module_whose_output_breaks_our_hook(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    model = TupleMlp()
    with Monitor(run="tuple relu", store=tmp_path) as mon:
        mon.watch(model, every=1, window=16)
        assert train(mon, model) == STEPS
    assert len(warnings_of(caplog_warnings)) == 1  # two layers fail alike: said once
    assert "expected a Tensor output, got tuple" in warnings_of(caplog_warnings)[0]
    counts = stored_problems(tmp_path, mon.run_id)
    assert counts[f"{PROBLEMS_KEY}/watch_hook_failed:act1"] == STEPS
    assert counts[f"{PROBLEMS_KEY}/watch_hook_failed:act2"] == STEPS


def test_our_own_hook_code_raising(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: unit_stats.UnitStats, x: torch.Tensor) -> None:
        raise RuntimeError("a bug in trainlight")

    monkeypatch.setattr(unit_stats.UnitStats, "update", broken)
    model = mlp()
    with Monitor(run="buggy hook", store=tmp_path) as mon:
        mon.watch(model, every=2, window=16)
        assert train(mon, model) == STEPS
    assert len(warnings_of(caplog_warnings)) == 1
    assert "a bug in trainlight" in warnings_of(caplog_warnings)[0]
    counts = stored_problems(tmp_path, mon.run_id)
    assert counts[f"{PROBLEMS_KEY}/watch_hook_failed:1"] == STEPS // 2  # every 2nd pass
    assert counts[f"{PROBLEMS_KEY}/watch_hook_failed:3"] == STEPS // 2
    assert counts[PROBLEMS_KEY] == STEPS


class FunctionalMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 16), nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.relu(self.a(x)))


def test_our_functional_tracking_raising(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: functional_watch.PassTracker, x: object) -> None:
        raise RuntimeError("a bug in the function mode")

    monkeypatch.setattr(functional_watch.PassTracker, "producer", broken)
    model = FunctionalMlp()
    with Monitor(run="buggy mode", store=tmp_path) as mon:
        mon.watch(model, every=2, window=16)
        assert train(mon, model) == STEPS
    assert len(warnings_of(caplog_warnings)) == 1
    assert "a bug in the function mode" in warnings_of(caplog_warnings)[0]
    assert torch._C._len_torch_function_stack() == 0
    assert stored_problems(tmp_path, mon.run_id)[f"{PROBLEMS_KEY}/watch_functional_failed"] >= 10


# -- the store ---------------------------------------------------------------------------------
def test_full_disk_keeps_segments_then_delivers_them_with_the_count(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainlight.collectors import sinks

    real_write = sinks.write_atomically
    disk = {"full": True}

    def write(path: Path, payload: bytes) -> None:
        if disk["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, payload)

    monkeypatch.setattr(sinks, "write_atomically", write)
    model = mlp()
    with Monitor(run="full disk", store=tmp_path, flush_interval=0.02) as mon:
        mon.watch(model, every=1, window=32)
        train(mon, model, between=lambda step: time.sleep(0.005))
        mon.flush()
        assert mon.problems.count("inbox_write") >= 2
        assert not list(tmp_path.glob("inbox/*/*.parquet"))
        disk["full"] = False  # space is freed before the run ends
    assert len(warnings_of(caplog_warnings)) == 1
    assert "No space left on device" in warnings_of(caplog_warnings)[0]
    assert stored_problems(tmp_path, mon.run_id)[f"{PROBLEMS_KEY}/inbox_write"] >= 2
    sql = "SELECT count(*) FROM metrics WHERE run_id = ? AND key = 'loss'"
    assert stored_count(tmp_path, mon.run_id, sql) == STEPS  # nothing was lost


def test_a_disk_that_stays_full_says_at_exit_what_was_lost(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write(path: Path, payload: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("trainlight.collectors.sinks.write_atomically", write)
    model = mlp()
    mon = Monitor(run="full for good", store=tmp_path, flush_interval=0.02)
    assert train(mon, model) == STEPS
    mon.flush()
    assert len(warnings_of(caplog_warnings)) == 1  # while training: one line
    mon.close(timeout=0.5)
    messages = warnings_of(caplog_warnings)
    assert len(messages) == 2 and "not delivered at exit" in messages[1]
    assert "lost with this process" in messages[1]


def read_only_store(tmp_path: Path) -> tuple[Path, Callable[[], None]]:
    """A store directory this process cannot write, and how to make it writable again.

    chmod does not stop root: then the store path lies under a regular file instead.
    """
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o555)
    probe = store / "probe"
    try:
        probe.write_bytes(b"")
    except PermissionError:
        return store, lambda: store.chmod(0o755)
    probe.unlink()
    store.chmod(0o755)
    store.rmdir()
    store.write_text("a regular file where the store directory should be")
    return store, store.unlink


def test_read_only_store_directory(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    store, make_writable = read_only_store(tmp_path)
    model = mlp()
    with Monitor(run="read only", store=store, flush_interval=0.02) as mon:
        train(mon, model, between=lambda step: time.sleep(0.005))
        mon.flush()
        assert mon.problems.count("inbox_write") >= 2
        make_writable()
    assert len(warnings_of(caplog_warnings)) == 1
    assert "cannot write to the store inbox" in warnings_of(caplog_warnings)[0]
    assert stored_problems(store, mon.run_id)[f"{PROBLEMS_KEY}/inbox_write"] >= 2


def test_unreachable_server_keeps_segments_in_the_outbox(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outbox = tmp_path / "outbox"
    monkeypatch.setenv("TRAINLIGHT_OUTBOX", str(outbox))
    model = mlp()
    mon = Monitor(run="no server", store=f"http://127.0.0.1:{port}", flush_interval=0.02)
    assert train(mon, model, between=lambda step: time.sleep(0.002)) == STEPS
    mon.close(timeout=0.5)
    messages = warnings_of(caplog_warnings)
    assert "cannot reach the trainlight server" in messages[0]
    assert len(messages) == 2 and "not delivered at exit" in messages[1]  # where they are
    # The outbox holds the very bytes the server would have got: ingest them as it would.
    layout = StoreLayout.resolve(tmp_path / "store")
    (layout.inbox / mon.run_id).mkdir(parents=True)
    for segment in (outbox / mon.run_id).glob("*.parquet"):
        segment.rename(layout.inbox / mon.run_id / segment.name)
    assert stored_problems(layout.root, mon.run_id)[f"{PROBLEMS_KEY}/server_unreachable"] >= 1


HOLD_DUCKDB = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
print("holding", flush=True)
time.sleep(120)
"""

TRAIN_WITH_INBOX = """
import sys, torch
from torch import nn
from trainlight.collectors import Monitor
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
with Monitor(run="beside a locked db", store=sys.argv[1], flush_interval=0.05) as mon:
    mon.watch(model, every=1, window=16)
    for step in range(40):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        mon.log(step, loss=loss)
print("run_id", mon.run_id)
print("duckdb imported:", "duckdb" in sys.modules)
print("problems:", mon.problems.snapshot())
"""


def test_a_duckdb_file_locked_by_another_process_is_never_touched(tmp_path: Path) -> None:
    database = StoreLayout.resolve(tmp_path).database
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_DUCKDB, str(database)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        trainer = subprocess.run(
            [sys.executable, "-c", TRAIN_WITH_INBOX, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait(10)
    assert trainer.returncode == 0, trainer.stderr
    out = dict(line.split(" ", 1) for line in trainer.stdout.splitlines())
    assert out["duckdb"] == "imported: False"  # a trainer never opens DuckDB
    assert out["problems:"] == "{}" and "trainlight:" not in trainer.stderr  # nothing to say
    sql = "SELECT count(*) FROM metrics WHERE run_id = ? AND key = 'loss'"
    assert stored_count(tmp_path, out["run_id"], sql) == 40


# -- models and batches ------------------------------------------------------------------------
def test_a_model_without_relu_is_warned_about_once_and_left_alone(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    with Monitor(run="no relu", store=tmp_path) as mon:
        mon.watch(model, every=1)
        assert train(mon, model) == STEPS  # after the first pass found no activation: unhooked
        assert not any(m._forward_hooks for m in list(model.modules())[1:])
        assert len(model._forward_hooks) == len(model._forward_pre_hooks) == 1  # gradients'
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert len(warnings_of(caplog_warnings)) == 1
    assert "has no ReLU-family modules" in warnings_of(caplog_warnings)[0]
    assert stored_problems(tmp_path, mon.run_id)[f"{PROBLEMS_KEY}/watch_no_activations"] == 1


class ScalarNet(nn.Module):
    """A model whose activation is a 0-d tensor: a 'batch' with no batch axis."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.w * x.sum())


def test_a_zero_dimensional_batch(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    model = ScalarNet()
    with Monitor(run="0-d", store=tmp_path) as mon:
        mon.watch(model, every=1)
        assert train(mon, model, lambda step: torch.tensor(float(step))) == STEPS
    assert len(warnings_of(caplog_warnings)) == 1
    assert "shape () have no [batch, units, ...] axes" in warnings_of(caplog_warnings)[0]
    key = f"{PROBLEMS_KEY}/watch_unbatched_output:act"
    assert stored_problems(tmp_path, mon.run_id)[key] == STEPS


def test_empty_batches(tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture) -> None:
    model = mlp()
    sizes = [0 if step % 4 == 3 else 8 for step in range(STEPS)]
    with Monitor(run="empty batches", store=tmp_path) as mon:
        mon.watch(model, every=1, window=32)
        assert train(mon, model, lambda step: torch.randn(sizes[step], 4)) == STEPS
    assert len(warnings_of(caplog_warnings)) == 1
    assert "an empty output (0, 16) was skipped" in warnings_of(caplog_warnings)[0]
    counts = stored_problems(tmp_path, mon.run_id)
    assert counts[f"{PROBLEMS_KEY}/watch_empty_output:1"] == sizes.count(0)
    sql = "SELECT count(*) FROM layer_metrics WHERE run_id = ? AND key = 'dead_frac'"
    assert stored_count(tmp_path, mon.run_id, sql) == 2 * (sizes.count(8) * 8 // 32)


# -- devices, grad modes, precision -----------------------------------------------------------
# This machine has no GPU. Two proxies stand in for "tensors on different devices": a model moved
# to another dtype mid-training (the same (device, dtype) check that catches a move to another
# device), and outputs on the `meta` device, which exist on no device that could be read.


def test_a_model_moved_mid_training_restarts_its_windows(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    model = mlp()

    def batch(step: int) -> torch.Tensor:
        if step == STEPS // 2:
            model.double()
        return torch.randn(8, 4, dtype=torch.float64 if step >= STEPS // 2 else torch.float32)

    with Monitor(run="moved", store=tmp_path) as mon:
        mon.watch(model, every=1, window=32)
        assert train(mon, model, batch) == STEPS
    assert len(warnings_of(caplog_warnings)) == 1
    assert "moved from cpu/torch.float32 to cpu/torch.float64" in warnings_of(caplog_warnings)[0]
    assert stored_problems(tmp_path, mon.run_id)[f"{PROBLEMS_KEY}/watch_layer_moved:1"] == 1
    sql = "SELECT count(*) FROM layer_metrics WHERE run_id = ? AND key = 'dead_frac' AND step >= 20"
    assert stored_count(tmp_path, mon.run_id, sql) == 2 * (STEPS // 2 * 8 // 32)  # after the move


class MetaBranch(nn.Module):
    """A model with one branch on the `meta` device (values that exist nowhere)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        self.side = nn.Sequential(nn.Linear(4, 16, device="meta"), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x.to("meta"))
        return self.body(x)


def test_outputs_on_an_unreadable_device(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    model = MetaBranch()
    with Monitor(run="meta branch", store=tmp_path) as mon:
        mon.watch(model, every=1, window=32)
        assert train(mon, model) == STEPS
    assert len(warnings_of(caplog_warnings)) == 1
    assert "meta device hold no values" in warnings_of(caplog_warnings)[0]
    counts = stored_problems(tmp_path, mon.run_id)
    assert counts[f"{PROBLEMS_KEY}/watch_meta_output:side.1"] == STEPS
    sql = "SELECT count(*) FROM layer_metrics WHERE run_id = ? AND layer = 'body.1'"
    assert stored_count(tmp_path, mon.run_id, sql) > 0  # the readable layer is unaffected


def test_logged_values_on_an_unreadable_device(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    model = mlp()
    with Monitor(run="meta scalar", store=tmp_path, flush_interval=0.02) as mon:

        def log_meta(step: int) -> None:
            mon.log(step, aux=torch.ones((), device="meta"), also=float(step))

        assert train(mon, model, between=log_meta) == STEPS
    assert len(warnings_of(caplog_warnings)) == 1
    assert "on meta could not be read" in warnings_of(caplog_warnings)[0]
    counts = stored_problems(tmp_path, mon.run_id)
    assert counts[f"{PROBLEMS_KEY}/log_unreadable:meta"] >= 1
    sql = "SELECT count(*) FROM metrics WHERE run_id = ? AND key IN ('loss', 'also')"
    assert stored_count(tmp_path, mon.run_id, sql) == 2 * STEPS  # the rest of each flush stays


def test_a_model_only_ever_run_under_no_grad(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    frozen = nn.Sequential(nn.Linear(4, 16), nn.ReLU())  # watched, but never trained
    head = nn.Linear(16, 1)

    def features(step: int) -> torch.Tensor:
        with torch.no_grad():
            return frozen(torch.randn(8, 4))

    steps = 80
    with Monitor(run="no grad", store=tmp_path) as mon:
        mon.watch(frozen, every=1)
        assert train(mon, head, features, steps=steps) == steps
    assert len(warnings_of(caplog_warnings)) == 1
    assert "under torch.no_grad() and none in training" in warnings_of(caplog_warnings)[0]
    counts = stored_problems(tmp_path, mon.run_id)
    assert counts[f"{PROBLEMS_KEY}/watch_idle_passes"] == steps - 49


def test_a_few_no_grad_passes_before_training_are_not_a_problem(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture
) -> None:
    model = mlp()
    with Monitor(run="sanity check first", store=tmp_path) as mon:
        mon.watch(model, every=1, window=32)
        with torch.no_grad():
            for _ in range(5):  # e.g. a validation sanity check before training
                model(torch.randn(8, 4))
        assert train(mon, model) == STEPS
    assert warnings_of(caplog_warnings) == []
    assert stored_problems(tmp_path, mon.run_id) == {}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_low_precision_activations(
    tmp_path: Path, caplog_warnings: pytest.LogCaptureFixture, dtype: torch.dtype
) -> None:
    model = mlp()
    with Monitor(run=f"amp {dtype}", store=tmp_path) as mon:
        mon.watch(model, every=1, window=32)

        def amp() -> AbstractContextManager[object]:
            return torch.autocast("cpu", dtype=dtype)

        assert train(mon, model, context=amp) == STEPS
    assert warnings_of(caplog_warnings) == []  # nothing to skip: measured in float32
    assert stored_problems(tmp_path, mon.run_id) == {}
    db = Store(StoreLayout.resolve(tmp_path))
    try:
        Ingester(db).ingest_pending()
        with db.read() as cur:
            rows = cur.execute(
                "SELECT layer, key, value FROM layer_metrics WHERE run_id = ?", [mon.run_id]
            ).fetchall()
    finally:
        db.close()
    assert {layer for layer, key, _ in rows if key == DEAD_FRAC} == {"1", "3"}  # the ReLUs
    assert {layer for layer, key, _ in rows if key == GRAD_NORM} == {"0", "2", "4"}  # Linears
    assert all(torch.isfinite(torch.tensor(v)) for _, _, v in rows)
