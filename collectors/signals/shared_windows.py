"""Activation windows merged across ranks before they are judged (distributed jobs only).

Each rank sees only its own batches, so a unit that never fires on rank 0's data may fire on rank
1's: judged alone, rank 0 would call it dead. Instead each rank holds its closed windows' raw state
(`WindowState`) and the ranks exchange them; rank 0 merges the windows of the same call site
(fired on ANY rank, non-finite counts summed, Chan's merge of the variances) and only then
computes `KEYS`.

Protocol, on the training thread of every rank, at every observed training forward pass of the
watched model (the same passes on every rank, since DDP runs them in lockstep):
1. a `LaggedVote` says whether any rank closed a window since its previous vote;
2. if one did, the ranks gather a manifest {site: units of each held window} and exchange, sites in
   name order, the windows every rank holds with the same units (the k oldest, k the fewest any
   rank holds): one all_gather of one packed float64 vector. Rank 0 merges and queues them for the
   flush thread; the other ranks drop theirs.
A site that only some ranks call (data-dependent control flow) waits, bounded by `max_held`.
A clean `close()` makes one last exchange on every rank.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from trainlight.collectors.distributed import LaggedVote, RankGroup
from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.unit_stats import UnitStats, WindowState, merge_states

Emit = Callable[[str, torch.Tensor, int], None]  # (layer, KEYS values, step)
Manifest = dict[str, tuple[int, ...]]  # site -> units of each held window, oldest first


@dataclass(frozen=True)
class _Held:
    stats: UnitStats  # the site's stats (its previous dead set gives `undead`)
    state: WindowState
    step: int  # the training step when this rank closed the window


class SharedWindows:
    """Closed windows of one watcher waiting to be merged across ranks."""

    max_held = 64  # windows per site; beyond this the oldest are dropped (and counted)

    def __init__(self, group: RankGroup, problems: Problems, emit: Emit) -> None:
        self._group, self._problems, self._emit = group, problems, emit
        self._vote = LaggedVote(group)
        self._held: dict[str, deque[_Held]] = {}
        self._fresh = False  # a window closed since this rank's last vote

    def hold(self, stats: UnitStats, step: int) -> None:
        """A site's window is full (training thread): keep its state for the next exchange."""
        if self._group.broken:  # alone: rank 0 judges its own data, the others drop theirs
            values = stats.close()
            if self._group.leader:
                self._emit(stats.settings.name, values, step)
            return
        queue = self._held.setdefault(stats.settings.name, deque())
        queue.append(_Held(stats, stats.take(), step))
        self._fresh = True
        if len(queue) > self.max_held:
            queue.popleft()
            self._problems.report(
                f"watch_unmatched_windows:{stats.settings.name}",
                f"watch(): layer {stats.settings.name!r} closed {self.max_held} windows that "
                "other ranks did not; dropping the oldest (is it called on some ranks only?)",
                once_per="watch_unmatched_windows",
            )

    def sync(self) -> None:
        """An observed training pass began: vote, and exchange when the last vote said so."""
        fresh, self._fresh = self._fresh, False
        try:
            if self._vote.exchange(fresh):
                self._exchange()
        except Exception as exc:  # never into the forward pass; this rank leaves the protocol
            self._group.fail(exc)

    def close(self) -> None:
        """A clean end on every rank: settle the vote in flight and make a last exchange."""
        try:
            self._vote.settle()
            self._exchange()
        except Exception as exc:
            self._group.fail(exc)
        self._held.clear()

    def _exchange(self) -> None:
        manifest = {name: tuple(h.state.fired.numel() for h in q) for name, q in self._held.items()}
        manifests = self._group.gather(manifest)
        if manifests is None:
            return
        plan = shared_plan(manifests)
        taken = [(name, self._held[name].popleft()) for name, k in plan for _ in range(k)]
        if not taken:
            return
        packed = [held.state.pack() for _, held in taken]
        gathered = self._group.gather_tensors(torch.cat(packed))
        if gathered is None or not self._group.leader:
            return
        offset = 0
        for (name, held), one in zip(taken, packed, strict=True):
            end = offset + one.numel()
            device = held.state.fired.device
            states = [WindowState.unpack(row[offset:end], device) for row in gathered]
            self._emit(name, held.stats.finish(merge_states(states)), held.step)
            offset = end


def shared_plan(manifests: Sequence[Mapping[str, tuple[int, ...]]]) -> list[tuple[str, int]]:
    """(site, k) in name order: the k oldest windows that every rank holds with the same units.

    Pure and computed from everyone's manifests, so every rank derives the same plan.
    """
    common = set(manifests[0]).intersection(*manifests[1:])
    plan = []
    for name in sorted(common):
        held = [m[name] for m in manifests]
        k = 0
        while k < min(len(h) for h in held) and len({h[k] for h in held}) == 1:
            k += 1
        if k:
            plan.append((name, k))
    return plan
