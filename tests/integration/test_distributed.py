"""A Monitor in a real `torch.distributed` job: 2 CPU processes (gloo), DDP, one recorded run.

Every rank builds the same Monitor (`store=None`: TRAINLIGHT_DIR, set per rank here so that a
rank writing anything would show). Checked: one run id on all ranks, only rank 0 writes and has
a flush thread, activation windows merged across ranks before rank 0 judges them, and a stop
request that makes both ranks leave the loop at the same step.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tests.support.processes import free_port
from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors import Monitor
from trainlight.collectors.schema import StopRequest, StoreLayout, write_atomically

pytestmark = pytest.mark.slow
WORLD = 2
JOB_TIMEOUT_S = 180


def rank_store(root: Path, rank: int) -> Path:
    return root / ("store" if rank == 0 else f"store-of-rank-{rank}")


def identity_net() -> nn.Module:
    """Linear(2, 2) = identity, then ReLU: unit i fires exactly when input feature i > 0."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.zero_()
    return net


def rank_batch(rank: int, generator: torch.Generator) -> torch.Tensor:
    """Unit 0: negative on rank 0 (dead there), positive on rank 1. Unit 1: negative everywhere."""
    magnitude = 0.5 + torch.rand(8, 2, generator=generator)
    sign = torch.tensor([1.0 if rank == 1 else -1.0, -1.0])
    return magnitude * sign


def worker(rank: int, port: int, root: str, scenario: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ["TRAINLIGHT_DIR"] = str(rank_store(Path(root), rank))
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=JOB_TIMEOUT_S)
    )
    try:
        result = SCENARIOS[scenario](rank, Path(root))
        (Path(root) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        # Every rank done with every collective (ours and the Monitor's own gloo group) before
        # any rank tears its groups down: destroying a group another rank still talks to aborts
        # that rank's gloo threads ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


def train_dead_units(rank: int, root: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    model = DistributedDataParallel(identity_net())
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(rank)
    with Monitor(run="ddp dead units", project="dist", flush_interval=0.05) as mon:
        mon.watch(model, every=1, window=64)  # 64 samples over both ranks: 4 steps of 8 each
        threads = sorted(t.name for t in threading.enumerate())
        for step in range(20):
            loss = model(rank_batch(rank, generator)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
    return {"run_id": mon.run_id, "threads": threads}


def train_until_stopped(rank: int, root: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    model = DistributedDataParallel(identity_net())
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(rank)
    stopped_at = None
    with Monitor(run="ddp stop", flush_interval=0.05) as mon:
        for step in range(2000):
            loss = model(rank_batch(rank, generator)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
            if rank == 0 and step == 10:  # the dashboard's stop button, as a file
                layout = StoreLayout.resolve(rank_store(root, 0))
                layout.control.mkdir(parents=True, exist_ok=True)
                write_atomically(layout.control_path(mon.run_id), StopRequest("test").to_bytes())
            if mon.should_stop():
                stopped_at = step
                break
            time.sleep(0.005)
    return {"run_id": mon.run_id, "stopped_at": stopped_at}


SCENARIOS = {"dead units": train_dead_units, "stop": train_until_stopped}


def run_job(root: Path, scenario: str) -> list[dict[str, Any]]:
    """Spawn the ranks, wait (bounded), and return each rank's result."""
    context = mp.start_processes(
        worker,
        args=(free_port(), str(root), scenario),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    try:
        while not context.join(timeout=2):
            assert time.monotonic() < deadline, f"{scenario}: the job hung"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [json.loads((root / f"rank{r}.json").read_text()) for r in range(WORLD)]


def query(store: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = Store(StoreLayout.resolve(store))
    try:
        Ingester(db).ingest_pending()
        with db.read() as cur:
            return cur.execute(sql, list(params)).fetchall()
    finally:
        db.close()


def test_one_run_written_by_rank_0_with_units_judged_on_all_ranks_data(tmp_path: Path) -> None:
    results = run_job(tmp_path, "dead units")
    run_id = results[0]["run_id"]
    assert all(r["run_id"] == run_id for r in results)
    assert "trainlight-flush" in results[0]["threads"]
    assert "trainlight-flush" not in results[1]["threads"]
    assert not rank_store(tmp_path, 1).exists()  # rank 1 wrote nothing at all
    store = rank_store(tmp_path, 0)
    assert query(store, "SELECT run_id, status FROM runs") == [(run_id, "finished")]
    rows = query(
        store,
        "SELECT step, key, value FROM layer_metrics WHERE run_id = ? AND layer = '1' "
        "ORDER BY step, key",
        run_id,
    )
    dead = [value for _, key, value in rows if key == "dead_frac"]
    # 20 steps x 8 samples x 2 ranks in windows of 64: 5 windows. Unit 0 is dead on rank 0's
    # data only, so after the merge only unit 1 is dead: 1/2, not rank 0's own 2/2.
    assert dead == [0.5] * 5
    assert [v for _, k, v in rows if k in ("undead", "nonfinite")] == [0.0] * 10


def test_a_stop_request_makes_every_rank_leave_at_the_same_step(tmp_path: Path) -> None:
    results = run_job(tmp_path, "stop")
    steps = [r["stopped_at"] for r in results]
    assert steps[0] is not None and steps[0] == steps[1]
    assert 10 < steps[0] < 2000
    run_id = results[0]["run_id"]
    assert query(rank_store(tmp_path, 0), "SELECT status FROM runs WHERE run_id = ?", run_id) == [
        ("stopped",)
    ]
