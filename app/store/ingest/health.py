"""Health evaluation on ingest: the rules advance with every segment, inside its transaction.

The rules' state (with the rows of a step not complete yet) is loaded from `health_state`, fed each
new segment of a run in sequence order (the one with a terminal status completes the last step),
and saved back with the segments' rows, so a restart, a crash or a late `trainlight ingest` can
never make the server skip or repeat a state change. Each change is appended to `health` with its
step. Only the rules loop over runs and segments (they are Python); their state is loaded, and
their changes, derived rows and new state written, with one statement each for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pyarrow as pa

from trainlight.app.store.database import utc_naive
from trainlight.app.store.ingest.batch_rows import RunBatch
from trainlight.app.store.ingest.registered import registered
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth, spec_from_header
from trainlight.collectors.health.verdict import RED, Transition
from trainlight.collectors.schema import NO_LAYER, TERMINAL_STATUSES, RunHeader


@dataclass(frozen=True)
class HealthOutcome:
    transitions: list[Transition]
    prune_reason: str | None  # set when a prune_on signal turned red: the run must stop
    state: str  # the rules' state as saved in `health_state`
    health: RunHealth  # the same state, live


class LiveHealth:
    """The ingester's runs' rule states kept live between passes, each with the JSON it was saved
    as: a run whose saved state is still that JSON resumes from the object instead of parsing it
    (parsing cost more than judging a small segment). An entry is taken out when used and put
    back only after its transaction committed, so a rolled-back pass never leaves a state that
    ran ahead of the database."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._states: dict[str, tuple[str, RunHealth]] = {}

    def take(self, run_id: str, saved: str) -> RunHealth | None:
        entry = self._states.pop(run_id, None)
        return entry[1] if entry is not None and entry[0] == saved else None

    def keep(self, outcomes: dict[str, HealthOutcome]) -> None:
        for run_id, outcome in outcomes.items():
            self._states[run_id] = (outcome.state, outcome.health)
        while len(self._states) > self.capacity:  # the least recently ingested go first
            del self._states[next(iter(self._states))]


@dataclass
class _Changes:
    """What the rules produced for a whole batch, gathered for set-based writes."""

    transitions: list[tuple[str, Transition]] = field(default_factory=list)
    # run, step, key, value, and the send time of the segment that produced the row
    derived: list[tuple[str, int, str, float, datetime]] = field(default_factory=list)
    states: list[tuple[str, str]] = field(default_factory=list)  # run, RunHealth JSON
    prunes: list[tuple[str, str]] = field(default_factory=list)  # run, reason


def evaluate_runs(
    cur: duckdb.DuckDBPyConnection, runs: Sequence[RunBatch], live: LiveHealth | None = None
) -> dict[str, HealthOutcome]:
    """Advance every run's rules over its segments, in order; record what changed. The caller
    gives the outcomes to `live.keep` once the transaction has committed."""
    saved = dict(
        cur.execute(
            "SELECT run_id, state FROM health_state WHERE run_id IN (SELECT unnest(?))",
            [[run.run_id for run in runs]],
        ).fetchall()
    )
    changes = _Changes()
    outcomes = {}
    for run in runs:
        first = _spec(run.segments[0].header)
        health = _resume(run.run_id, first, saved.get(run.run_id), live)
        outcomes[run.run_id] = _evaluate(run, first, health, changes)
    _write(cur, changes)
    return outcomes


def _resume(
    run_id: str, first: HealthSpec, saved: str | None, live: LiveHealth | None
) -> RunHealth:
    """The run's rules as saved: live from the last pass when they are what was saved."""
    if saved is None:
        return RunHealth(first)
    kept = live.take(run_id, saved) if live is not None else None
    return kept if kept is not None else RunHealth.from_json(first, saved)


def _evaluate(
    run: RunBatch, first: HealthSpec, health: RunHealth, changes: _Changes
) -> HealthOutcome:
    transitions: list[Transition] = []
    prune_reason: str | None = None
    spec, spec_of = first, run.segments[0].header
    for segment in run.segments:
        if not _same_spec(segment.header, spec_of):  # headers repeat it: parse it once a run
            spec, spec_of = _spec(segment.header), segment.header
        final = segment.header.status in TERMINAL_STATUSES  # the run's last step is complete
        result = health.feed(segment.table, spec, final=final, sent_at=segment.header.sent_at)
        for change in result.transitions:
            changes.transitions.append((run.run_id, change))
            if change.state == RED and change.signal in spec.prune_on and prune_reason is None:
                prune_reason = f"auto-pruned: {change.signal} red: {change.reason}"
        sent = utc_naive(segment.header.sent_at)
        changes.derived += [
            (run.run_id, step, key, value, sent) for step, key, value in result.derived
        ]
        transitions += result.transitions
    state = health.to_json()
    changes.states.append((run.run_id, state))
    if prune_reason is not None:
        changes.prunes.append((run.run_id, prune_reason))
    return HealthOutcome(transitions, prune_reason, state, health)


def _write(cur: duckdb.DuckDBPyConnection, changes: _Changes) -> None:
    now = utc_naive()
    if changes.transitions:
        _insert_transitions(cur, changes.transitions, now)
    if changes.derived:
        _insert_derived(cur, changes.derived)
    run_ids, states = zip(*changes.states, strict=True)
    cur.execute(
        """INSERT INTO health_state SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[])
           ON CONFLICT (run_id) DO UPDATE SET state = excluded.state""",
        [list(run_ids), list(states)],
    )
    if changes.prunes:
        run_ids, reasons = zip(*changes.prunes, strict=True)
        cur.execute(
            """UPDATE runs SET stop_requested = true, stop_reason = p.reason
               FROM (SELECT unnest(?::VARCHAR[]) AS run_id, unnest(?::VARCHAR[]) AS reason) p
               WHERE runs.run_id = p.run_id AND NOT coalesce(runs.stop_requested, false)""",
            [list(run_ids), list(reasons)],
        )


def _insert_transitions(
    cur: duckdb.DuckDBPyConnection, transitions: list[tuple[str, Transition]], now: object
) -> None:
    """Append the changes in order; `seq` (from `health_seq`) increases along the list, so
    "the latest row per (run_id, signal)" is the last change, even within a batch."""
    seqs = sorted(
        int(s)
        for (s,) in cur.execute(
            "SELECT nextval('health_seq') FROM range(?)", [len(transitions)]
        ).fetchall()
    )
    table = pa.table(
        {
            "run_id": pa.array([run_id for run_id, _ in transitions], pa.string()),
            "signal": pa.array([t.signal for _, t in transitions], pa.string()),
            "state": pa.array([t.state for _, t in transitions], pa.string()),
            "step": pa.array([t.step for _, t in transitions], pa.int64()),
            "reason": pa.array([t.reason for _, t in transitions], pa.string()),
            "updated_at": pa.array([now] * len(transitions), pa.timestamp("us")),
            "seq": pa.array(seqs, pa.int64()),
        }
    )
    with registered(cur, "batch_health", table):
        cur.execute(
            """INSERT INTO health (run_id, signal, state, step, reason, updated_at, seq)
               SELECT * FROM batch_health"""
        )


def _insert_derived(
    cur: duckdb.DuckDBPyConnection, derived: list[tuple[str, int, str, float, datetime]]
) -> None:
    """Metric rows the rules produced (catch steps, spike onsets, ...) into `metrics`, stamped
    with the send time of the segment they came from (not the ingest time: the same segments
    give the same rows however they are batched), and the last of each key into `latest`
    (written after the batch's own rows, as it always was)."""
    run_ids, steps, keys, values, walls = (list(c) for c in zip(*derived, strict=True))
    cur.execute(
        """INSERT INTO metrics SELECT unnest(?::VARCHAR[]), unnest(?::BIGINT[]),
                  unnest(?::VARCHAR[]), unnest(?::DOUBLE[]), unnest(?::TIMESTAMP[])""",
        [run_ids, steps, keys, values, walls],
    )
    last = {(run_id, key): (step, value) for run_id, step, key, value, _ in derived}
    cur.execute(
        """INSERT INTO latest SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?,
                  unnest(?::BIGINT[]), unnest(?::DOUBLE[])
           ON CONFLICT (run_id, key, layer) DO UPDATE
           SET step = excluded.step, value = excluded.value""",
        [
            [run_id for run_id, _ in last],
            [key for _, key in last],
            NO_LAYER,
            [step for step, _ in last.values()],
            [value for _, value in last.values()],
        ],
    )


def _spec(header: RunHeader) -> HealthSpec:
    return spec_from_header(header.roles, header.health, header.prune_on, header.planned_steps())


def _same_spec(a: RunHeader, b: RunHeader) -> bool:
    return (
        a.roles == b.roles
        and a.health == b.health
        and a.prune_on == b.prune_on
        and a.planned_steps() == b.planned_steps()
    )
