"""Health evaluation on ingest: the rules advance with every segment, inside its transaction.

The rules' state is loaded from `health_state`, fed each new segment in sequence order, and saved
back with the segment's rows, so a restart, a crash or a late `trainlight ingest` can never make
the server skip or repeat a state change. Each change is appended to `health` with its step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from trainlight.app.store.database import utc_naive
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth, spec_from_header
from trainlight.collectors.health.verdict import RED, Transition
from trainlight.collectors.schema import NO_LAYER, RunHeader

if TYPE_CHECKING:
    from trainlight.app.store.ingest import Segment


@dataclass(frozen=True)
class HealthOutcome:
    transitions: list[Transition]
    prune_reason: str | None  # set when a prune_on signal turned red: the run must stop


def evaluate_segments(
    cur: duckdb.DuckDBPyConnection, run_id: str, segments: Sequence[Segment]
) -> HealthOutcome:
    rows = cur.execute("SELECT state FROM health_state WHERE run_id = ?", [run_id]).fetchall()
    row = rows[0] if rows else None  # fetchall: DuckDB refuses new work on an unfinished result
    first = _spec(segments[0].header)
    health = RunHealth.from_json(first, row[0]) if row else RunHealth(first)
    transitions: list[Transition] = []
    prune_reason: str | None = None
    now = utc_naive()
    for segment in segments:
        spec = _spec(segment.header)
        result = health.feed(segment.table, spec)
        for change in result.transitions:
            cur.execute(
                """INSERT INTO health (run_id, signal, state, step, reason, updated_at, seq)
                   VALUES (?, ?, ?, ?, ?, ?, nextval('health_seq'))""",
                [run_id, change.signal, change.state, change.step, change.reason, now],
            )
            if change.state == RED and change.signal in spec.prune_on and prune_reason is None:
                prune_reason = f"auto-pruned: {change.signal} red: {change.reason}"
        for step, key, value in result.derived:
            cur.execute(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", [run_id, step, key, value, now]
            )
            cur.execute(
                """INSERT INTO latest VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, key, layer)
                   DO UPDATE SET step = excluded.step, value = excluded.value""",
                [run_id, key, NO_LAYER, step, value],
            )
        transitions += result.transitions
    cur.execute(
        """INSERT INTO health_state VALUES (?, ?)
           ON CONFLICT (run_id) DO UPDATE SET state = excluded.state""",
        [run_id, health.to_json()],
    )
    if prune_reason is not None:
        cur.execute(
            """UPDATE runs SET stop_requested = true, stop_reason = ?
               WHERE run_id = ? AND NOT coalesce(stop_requested, false)""",
            [prune_reason, run_id],
        )
    return HealthOutcome(transitions, prune_reason)


def _spec(header: RunHeader) -> HealthSpec:
    return spec_from_header(header.roles, header.health, header.prune_on)
