"""Replicas of a run and how differently they predict: PD per matched step, per mate.

A run's replicas ("mates") are the other runs of its non-empty `group` that recorded
`mon.predictions`. Two replicas are compared only at steps both recorded, on the same probe
examples (a step whose matrices differ in shape is skipped: the probe sets are not the same).
The PD itself is collectors/health/prediction_difference.py: on the probe's true labels when
either run recorded them (`predictions/labels`), else on the top class. A long run is thinned to
at most `MAX_STEPS` matched steps (always keeping the latest) so a page load stays bounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from trainlight.app.store.read.arrays import LABELS_KEY, PREDICTIONS_KEY, Matrix, read_arrays
from trainlight.collectors.health.prediction_difference import (
    PairDifference,
    pair_difference,
    relative_pd,
    usable_labels,
)
from trainlight.collectors.health.rules.repro import ReplicaReading

MAX_STEPS = 200


@dataclass(frozen=True)
class Mate:
    run_id: str
    name: str


@dataclass(frozen=True)
class ReplicaSeries:
    """PD between the run and one mate, at each matched step (ascending; thinned), and the
    reading at their latest matched step that the `repro` rule judges (None: none usable)."""

    mate: Mate
    steps: tuple[int, ...]
    differences: tuple[PairDifference, ...]
    latest: ReplicaReading | None


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


def probe_labels(cur: duckdb.DuckDBPyConnection, run_id: str) -> Matrix | None:
    """The labels the run recorded with its predictions (first row ingested), as a column."""
    rows = read_arrays(cur, run_id, LABELS_KEY)
    return rows[0].matrix[:, 0] if rows else None


def pair_labels(cur: duckdb.DuckDBPyConnection, run_id: str, mate: Mate) -> Matrix | None:
    """The run's labels, else the mate's (the probe set is the same)."""
    mine = probe_labels(cur, run_id)
    return mine if mine is not None else probe_labels(cur, mate.run_id)


def pair_series(
    cur: duckdb.DuckDBPyConnection, run_id: str, mate: Mate, steps: Sequence[int]
) -> ReplicaSeries:
    """PD between the run and `mate` at `steps` (those whose probe shapes agree), on the labels
    when either run recorded usable ones, and the reading the `repro` rule judges."""
    mine = {m.step: m.matrix for m in read_arrays(cur, run_id, PREDICTIONS_KEY, steps)}
    theirs = {m.step: m.matrix for m in read_arrays(cur, mate.run_id, PREDICTIONS_KEY, steps)}
    labels = pair_labels(cur, run_id, mate)
    kept, diffs = [], []
    for step in steps:
        a, b = mine.get(step), theirs.get(step)
        if a is None or b is None or a.shape != b.shape:
            continue
        kept.append(step)
        diffs.append(pair_difference(a, b, usable_labels(labels, a.shape)))
    return ReplicaSeries(mate, tuple(kept), tuple(diffs), latest_reading(cur, run_id, mate))


def latest_reading(
    cur: duckdb.DuckDBPyConnection, run_id: str, mate: Mate
) -> ReplicaReading | None:
    """The run against `mate` at their latest usable matched step, with how much both runs'
    predictions moved since the usable matched step before it."""
    steps = matched_steps(cur, run_id, mate.run_id)
    mine = {m.step: m.matrix for m in read_arrays(cur, run_id, PREDICTIONS_KEY, steps[-2:])}
    theirs = {m.step: m.matrix for m in read_arrays(cur, mate.run_id, PREDICTIONS_KEY, steps[-2:])}
    usable = [s for s in steps[-2:] if s in mine and s in theirs]
    usable = [s for s in usable if mine[s].shape == theirs[s].shape]
    if not usable or usable[-1] != steps[-1]:
        return None
    last = usable[-1]
    labels = usable_labels(pair_labels(cur, run_id, mate), mine[last].shape)
    difference = pair_difference(mine[last], theirs[last], labels)
    if len(usable) < 2 or mine[usable[0]].shape != mine[last].shape:
        return ReplicaReading(last, difference, None, math.nan)
    first = usable[0]
    movement = max(
        relative_pd(mine[first], mine[last], labels),
        relative_pd(theirs[first], theirs[last], labels),
        key=lambda value: math.inf if math.isnan(value) else value,
    )
    return ReplicaReading(last, difference, first, movement)


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


def latest_differences(cur: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, ReplicaReading]:
    """Mate run id → its reading at the latest step both recorded with matching probe shapes."""
    latest = {}
    for mate in replica_mates(cur, run_id):
        reading = latest_reading(cur, run_id, mate)
        if reading is not None:
            latest[mate.run_id] = reading
    return latest
