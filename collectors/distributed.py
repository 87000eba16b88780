"""Rank awareness for `torch.distributed` jobs: one run, written by rank 0, agreed on by every rank.

A Monitor built identically on every rank (after `init_process_group`) records ONE run:

- rank 0 picks the run id and broadcasts it; only rank 0 has a flush thread and a sink, the other
  ranks write no file and start no thread;
- collectives run only on the training thread, at points every rank reaches in the same order:
  Monitor construction, `should_stop()` calls, observed training forward passes of a watched model,
  and a clean `close()`. Never on the flush thread, whose timing differs from rank to rank;
- they use the Monitor's own gloo group over CPU tensors: they never interleave with the
  training's own (possibly NCCL) collectives, and the per-step stop vote never waits for a GPU;
- the stop vote is asynchronous (`LaggedVote`): call n contributes, call n+1 reads the agreed
  result, so every rank sees the same answer at the same call, one call after rank 0 saw the
  request, and a step waits on the network only when another rank lags behind;
- a failed collective (a peer died, a timeout) is reported once and ends all collective work of
  this Monitor: training goes on, each rank on its own, rather than hanging.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from trainlight.collectors.problems import Problems

T = TypeVar("T")
JOIN_WARNING_S = 60.0  # waiting this long for the other ranks at construction earns a warning


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in a distributed job."""

    rank: int
    world_size: int


def rank_info(problems: Problems) -> RankInfo | None:
    """This process's rank in an initialised job of 2+ processes; None when it runs alone.

    A launcher's WORLD_SIZE without an initialised process group means every rank would record
    its own run: said once, since the fix (build the Monitor after init_process_group) is easy.
    """
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        return RankInfo(dist.get_rank(), world) if world > 1 else None
    if _int_env("WORLD_SIZE") > 1:
        problems.report(
            "distributed_not_initialized",
            "WORLD_SIZE > 1 but torch.distributed is not initialised: every rank records its "
            "own run. Build the Monitor after torch.distributed.init_process_group()",
        )
    return None


def join_job(problems: Problems, run_id: str) -> tuple[RankGroup | None, str]:
    """This rank's group and the job's run id (rank 0's), or (None, run_id) when alone.

    Blocks until every rank has built its Monitor; a rank that waits long says why, since the
    usual cause is a Monitor built on rank 0 only (`if rank == 0: Monitor(...)`).
    """
    info = rank_info(problems)
    if info is None:
        return None, run_id
    waiting = threading.Timer(
        JOIN_WARNING_S,
        problems.report,
        (
            "distributed_join_wait",
            f"rank {info.rank} has waited {JOIN_WARNING_S:.0f} s for the other ranks to build "
            "their Monitor: build it on EVERY rank (or pass distributed=False)",
        ),
    )
    waiting.daemon = True
    waiting.start()
    try:
        group = RankGroup(info, problems)
        return group, group.agree(run_id)
    finally:
        waiting.cancel()


def _int_env(name: str) -> int:
    try:
        return int(os.environ.get(name, "1"))
    except ValueError:
        return 1


class RankGroup:
    """The Monitor's gloo group and its collectives; every method is called by every rank."""

    def __init__(self, info: RankInfo, problems: Problems) -> None:
        self.rank, self.world_size = info.rank, info.world_size
        self.problems = problems
        self.broken = False
        self.group: Any = None  # None: the default group (when a gloo group cannot be made)
        try:
            self.group = dist.new_group(backend="gloo")
        except Exception as exc:  # e.g. a build without gloo: try the default group
            problems.report(
                "distributed_group",
                f"cannot make a gloo group ({exc!r}); using the default process group",
            )

    @property
    def usable(self) -> bool:
        """Collectives can still run (not broken, the process group not yet destroyed)."""
        return not self.broken and dist.is_initialized()

    @property
    def leader(self) -> bool:
        """Rank 0: the one that writes and decides."""
        return self.rank == 0

    def fail(self, exc: BaseException) -> None:
        """A collective failed: stop all collective work, warn once."""
        self.broken = True
        self.problems.report(
            "distributed_failed",
            f"a trainlight collective failed ({exc!r}); from now on each rank goes on alone "
            "(per-layer counts are rank 0's only, stop requests reach rank 0 only)",
        )

    def agree(self, value: T) -> T:
        """Rank 0's `value` on every rank (a picklable object; construction time only)."""
        if self.broken:
            return value
        box: list[Any] = [value]
        try:
            dist.broadcast_object_list(box, src=0, group=self.group)
        except Exception as exc:
            self.fail(exc)
            return value
        return box[0]

    def gather(self, value: T) -> list[T] | None:
        """Every rank's `value`, in rank order; None once broken."""
        if self.broken:
            return None
        out: list[Any] = [None] * self.world_size
        try:
            dist.all_gather_object(out, value, group=self.group)
        except Exception as exc:
            self.fail(exc)
            return None
        return out

    def gather_tensors(self, values: torch.Tensor) -> list[torch.Tensor] | None:
        """Every rank's CPU tensor (same shape on all), in rank order; None once broken."""
        if self.broken:
            return None
        out = [torch.empty_like(values) for _ in range(self.world_size)]
        try:
            dist.all_gather(out, values, group=self.group)
        except Exception as exc:
            self.fail(exc)
            return None
        return out


class LaggedVote:
    """An asynchronous "does anyone say yes?" across ranks, read one call later.

    `exchange(mine)` returns the OR of what the ranks contributed at their previous call and
    contributes `mine` to the next: every rank gets the same answers in the same call order, and
    the network round trip overlaps a training step instead of stalling it.
    """

    def __init__(self, group: RankGroup) -> None:
        self._group = group
        self._flag = torch.zeros(1, dtype=torch.int32)
        self._work: Any = None

    def exchange(self, mine: bool) -> bool:
        group = self._group
        if group.broken:
            return False
        try:
            agreed = self._settle()
            self._flag.fill_(int(mine))
            self._work = dist.all_reduce(
                self._flag, op=dist.ReduceOp.MAX, group=group.group, async_op=True
            )
        except Exception as exc:
            group.fail(exc)
            return False
        return agreed

    def settle(self) -> bool:
        """Wait for the vote in flight (if any) and return its result; no new vote starts."""
        if self._group.broken:
            return False
        try:
            return self._settle()
        except Exception as exc:
            self._group.fail(exc)
            return False

    def _settle(self) -> bool:
        if self._work is None:
            return False
        work, self._work = self._work, None
        work.wait()
        return bool(self._flag.item())


class StopVote:
    """`should_stop()` across ranks: rank 0 decides, every rank gets its decision at one call.

    Sticky: once agreed, every later call answers True without any more collectives (all ranks
    stop voting at the same call, so the call sequence stays matched).
    """

    def __init__(self, group: RankGroup) -> None:
        self._group = group
        self._vote = LaggedVote(group)
        self.agreed = False

    def __call__(self, leader_says_stop: bool) -> bool:
        if not self.agreed:
            self.agreed = self._vote.exchange(self._group.leader and leader_says_stop)
        if self._group.broken:  # alone from now on: a rank can only follow its own knowledge
            return self.agreed or leader_says_stop
        return self.agreed

    def close(self) -> None:
        """Complete the vote in flight (clean exit on every rank)."""
        self._vote.settle()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (names as in a single-process run)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model
