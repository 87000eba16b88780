"""Replicas of a run and how differently they predict: PD per matched step, per mate.

A run's replicas ("mates") are the other runs of its non-empty `group` that recorded
`mon.predictions`. Two replicas are compared only at steps both recorded, on the same probe
examples (a step whose matrices differ in shape is skipped: the probe sets are not the same).
The PD itself is collectors/health/prediction_difference.py. A long run is thinned to at most
`MAX_STEPS` matched steps (always keeping the latest) so a page load stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from trainlight.app.store.arrays import PREDICTIONS_KEY, read_arrays
from trainlight.collectors.health.prediction_difference import PairDifference, pair_difference

MAX_STEPS = 200


@dataclass(frozen=True)
class Mate:
    run_id: str
    name: str


@dataclass(frozen=True)
class ReplicaSeries:
    """PD between the run and one mate, at each matched step (ascending)."""

    mate: Mate
    steps: tuple[int, ...]
    differences: tuple[PairDifference, ...]


def replica_mates(cur: duckdb.DuckDBPyConnection, run_id: str) -> list[Mate]:
    """Other runs of the run's (non-empty) group that recorded predictions, by name."""
    rows = cur.execute(
        """SELECT r.run_id, r.name FROM runs r, runs me
        WHERE me.run_id = ? AND coalesce(me."group", '') <> '' AND r."group" = me."group"
          AND r.run_id <> me.run_id
          AND EXISTS (SELECT 1 FROM arrays a WHERE a.run_id = r.run_id AND a.key = ?)
          AND EXISTS (SELECT 1 FROM arrays a WHERE a.run_id = me.run_id AND a.key = ?)
        ORDER BY r.name, r.run_id""",
        [run_id, PREDICTIONS_KEY, PREDICTIONS_KEY],
    ).fetchall()
    return [Mate(str(r[0]), str(r[1] or r[0])) for r in rows]


def matched_steps(cur: duckdb.DuckDBPyConnection, run_id: str, mate_id: str) -> list[int]:
    """Steps at which both runs recorded predictions, ascending."""
    rows = cur.execute(
        """SELECT step FROM arrays WHERE run_id = ? AND key = ?
        INTERSECT SELECT step FROM arrays WHERE run_id = ? AND key = ?
        ORDER BY step""",
        [run_id, PREDICTIONS_KEY, mate_id, PREDICTIONS_KEY],
    ).fetchall()
    return [int(r[0]) for r in rows]


def thin(steps: Sequence[int], limit: int = MAX_STEPS) -> list[int]:
    """At most `limit` of `steps`, evenly spread, the first and the last always kept."""
    if len(steps) <= limit:
        return list(steps)
    if limit == 1:
        return [steps[-1]]
    picks = {round(i * (len(steps) - 1) / (limit - 1)) for i in range(limit)}
    return [steps[i] for i in sorted(picks)]


def pair_series(
    cur: duckdb.DuckDBPyConnection, run_id: str, mate: Mate, steps: Sequence[int]
) -> ReplicaSeries:
    """PD between the run and `mate` at `steps` (those whose probe shapes agree)."""
    mine = {m.step: m.matrix for m in read_arrays(cur, run_id, PREDICTIONS_KEY, steps)}
    theirs = {m.step: m.matrix for m in read_arrays(cur, mate.run_id, PREDICTIONS_KEY, steps)}
    kept, diffs = [], []
    for step in steps:
        a, b = mine.get(step), theirs.get(step)
        if a is None or b is None or a.shape != b.shape:
            continue
        kept.append(step)
        diffs.append(pair_difference(a, b))
    return ReplicaSeries(mate, tuple(kept), tuple(diffs))


def replica_differences(
    cur: duckdb.DuckDBPyConnection, run_id: str, limit: int = MAX_STEPS
) -> tuple[ReplicaSeries, ...]:
    """PD over time between the run and each of its mates (mates with no usable step left out)."""
    found = []
    for mate in replica_mates(cur, run_id):
        series = pair_series(
            cur, run_id, mate, thin(matched_steps(cur, run_id, mate.run_id), limit)
        )
        if series.steps:
            found.append(series)
    return tuple(found)


def latest_differences(
    cur: duckdb.DuckDBPyConnection, run_id: str
) -> dict[str, tuple[int, PairDifference]]:
    """Mate run id → (step, PD) at the latest step both recorded with matching probe shapes."""
    latest = {}
    for mate in replica_mates(cur, run_id):
        series = pair_series(cur, run_id, mate, matched_steps(cur, run_id, mate.run_id)[-1:])
        if series.steps:
            latest[mate.run_id] = (series.steps[-1], series.differences[-1])
    return latest
