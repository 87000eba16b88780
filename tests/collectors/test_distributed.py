"""The pieces of the distributed path that need no second process: merging windows, the plan every
rank derives, the lagged vote (on a one-process gloo group), and detection.

The real 2-process job is tests/integration/test_distributed.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.support.processes import free_port
from trainlight.collectors import Monitor
from trainlight.collectors.distributed import LaggedVote, RankGroup, RankInfo, StopVote, rank_info
from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.shared_windows import shared_plan
from trainlight.collectors.signals.unit_stats import (
    LayerSettings,
    Scratch,
    UnitStats,
    WindowState,
    merge_states,
)

SETTINGS = LayerSettings("layer", 10_000, 0.0, 1, 1e-8, False)


def window_of(*batches: torch.Tensor) -> WindowState:
    stats = UnitStats(SETTINGS, batches[0].shape[1], batches[0], Scratch())
    for batch in batches:
        stats.update(batch)
    return stats.take()


def test_windows_merged_over_ranks_equal_one_window_over_all_their_data() -> None:
    generator = torch.Generator().manual_seed(0)
    rank0 = [torch.randn(8, 5, generator=generator) - 1 for _ in range(3)]
    rank1 = [torch.randn(6, 5, generator=generator) * 3 for _ in range(2)]
    rank0[1][2, 4] = float("nan")
    merged = merge_states([window_of(*rank0), window_of(*rank1)])
    data = torch.cat(rank0 + rank1)  # the naive reference: every value at once
    finite = torch.where(data.isnan(), 0.0, data)
    assert merged.values == len(data)
    assert torch.equal(merged.fired, (data > 0).any(0))
    assert merged.nonfinite.tolist() == [0, 0, 0, 0, 1]
    assert torch.allclose(merged.mean[:4], finite.mean(0, dtype=torch.float64)[:4].float())
    reference_m2 = finite[:, :4].var(0, unbiased=False) * len(data)
    assert torch.allclose(merged.m2[:4], reference_m2, rtol=1e-5)


def test_a_unit_stuck_on_every_rank_keeps_a_variance_of_exactly_zero() -> None:
    stuck = torch.full((8, 3), 0.75)
    merged = merge_states([window_of(stuck), window_of(stuck[:5]), window_of(stuck)])
    assert torch.equal(merged.m2, torch.zeros(3))


def test_packed_state_round_trips() -> None:
    state = window_of(torch.tensor([[1.0, -1.0], [2.0, float("inf")]]))
    back = WindowState.unpack(state.pack(), torch.device("cpu"))
    assert back.values == state.values == 2
    assert torch.equal(back.fired, state.fired) and torch.equal(back.nonfinite, state.nonfinite)
    assert torch.allclose(back.mean[:1].float(), state.mean[:1])


def test_finishing_a_merged_window_judges_units_on_every_ranks_data() -> None:
    site = UnitStats(SETTINGS, 2, torch.zeros(1, 2), Scratch())
    dead_here = window_of(torch.tensor([[-1.0, -1.0]]))
    alive_there = window_of(torch.tensor([[1.0, -1.0]]))
    assert site.finish(dead_here)[0].item() == 1.0  # alone: both units dead
    assert site.finish(merge_states([dead_here, alive_there]))[0].item() == 0.5


def test_the_plan_takes_only_windows_every_rank_holds_with_the_same_units() -> None:
    manifests = [
        {"a": (4, 4, 4), "b": (8,), "only0": (2,), "c": (3, 5)},
        {"a": (4, 4), "b": (8, 8), "c": (3, 6)},
    ]
    assert shared_plan(manifests) == [("a", 2), ("b", 1), ("c", 1)]
    assert shared_plan([{"x": ()}, {"x": (1,)}]) == []


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Iterator[RankGroup]:
    """A real gloo process group of one process: the collectives run, nobody else takes part."""
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{free_port()}",
        rank=0,
        world_size=1,
        timeout=timedelta(seconds=30),
    )
    try:
        yield RankGroup(RankInfo(0, 1), Problems())
    finally:
        dist.destroy_process_group()


def test_a_lagged_vote_answers_one_call_later(one_rank_group: RankGroup) -> None:
    vote = LaggedVote(one_rank_group)
    assert [vote.exchange(v) for v in (True, False, False, True)] == [False, True, False, False]
    assert vote.settle() is True and vote.settle() is False


def test_the_stop_vote_is_sticky_and_decided_by_rank_0(one_rank_group: RankGroup) -> None:
    stop = StopVote(one_rank_group)
    assert [stop(s) for s in (False, True, False, False)] == [False, False, True, True]


def test_a_broken_group_goes_on_alone(one_rank_group: RankGroup) -> None:
    stop = StopVote(one_rank_group)
    one_rank_group.fail(RuntimeError("peer vanished"))
    assert one_rank_group.gather(1) is None and not one_rank_group.usable
    assert stop(True) is True  # rank 0 still honours its own stop request


def test_without_a_process_group_a_monitor_runs_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert rank_info(Problems()) is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    with caplog.at_level(logging.WARNING, "trainlight"), Monitor("x", store=tmp_path) as mon:
        mon.log(0, loss=1.0)
    assert mon.problems.count("distributed_not_initialized") == 1
    assert "Build the Monitor after torch.distributed.init_process_group()" in caplog.text
    assert list((tmp_path / "inbox" / mon.run_id).glob("*.parquet"))
