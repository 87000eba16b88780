"""`RunHealth`: one run's health, advanced segment by segment, in sequence order.

A verdict is a function of the run's rows, not of how they were cut into segments: rows wait in
`Pending` until their step is complete, and each rule is judged at evaluation points that are
steps of the data (a dead-unit reading, a runaway reading, a catch or LCA window closing), never
"once per segment". Hysteresis therefore counts evaluation points, and the same rows give the
same state changes at the same steps whatever the flush interval, on the server while the run
trains, after a restart, in a late `trainlight ingest`, or inside the collector for
auto-pruning. Each rule still takes a whole run of complete steps in one call (no per-step
loop in the evaluator), so judging stays a small fraction of ingest. The state, held rows
included, is plain JSON, persisted in the same transaction as the rows it was computed from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from trainlight.collectors.health import registry
from trainlight.collectors.health.judge import FeedContext, HealthSpec, Judge
from trainlight.collectors.health.observations import extract
from trainlight.collectors.health.pending import Pending
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.state_codec import dump_fields, load_dataclass
from trainlight.collectors.health.verdict import Hysteresis, Transition

__all__ = ["FeedResult", "HealthSpec", "RunHealth", "spec_from_header"]


@dataclass(frozen=True)
class FeedResult:
    transitions: list[Transition]
    derived: list[tuple[int, str, float]]  # metric rows the rules produced (catch, spike marks)


class RunHealth:
    """One run's judges (one per registered signal that applies to it), fed segment by segment."""

    def __init__(self, spec: HealthSpec, judges: dict[str, Judge[Any]] | None = None) -> None:
        self.spec = spec
        self.pending = Pending()
        self.hysteresis: dict[str, Hysteresis] = {}
        self.judges = _judges_for(spec, {}, spec) if judges is None else judges

    def feed(
        self,
        table: pa.Table,
        spec: HealthSpec | None = None,
        *,
        final: bool = False,
        sent_at: float | None = None,
    ) -> FeedResult:
        """Advance by one segment; returns the state changes it caused.

        Only complete steps are judged (`Pending`); `final` (the run's last segment) completes
        the last one. Each rule is judged at its own evaluation points (readings, window
        closes), and the changes come out in the order of those points' steps, so the result
        over a run never depends on where its segments were cut. `sent_at` (the segment
        header's send time; heartbeats too) is what time-based rules (`progress`) read."""
        if spec is not None and spec != self.spec:
            self.judges = _judges_for(spec, self.judges, self.spec)
            self.spec = spec
        keys = set().union(*(judge.keys() for judge in self.judges.values()))
        rows = self.pending.take(extract(table, keys), final)
        ctx = FeedContext(
            self.spec, rows, final, self.hysteresis, sent_at=sent_at, top_step=self.pending.step
        )
        for judge in self.judges.values():  # in dependency order
            judge.feed(ctx)
        ctx.judged.sort(key=lambda j: (j[0], j[1]))
        return FeedResult([change for _, _, change in ctx.judged], ctx.derived)

    def states(self) -> dict[str, str]:
        return {signal: h.state for signal, h in self.hysteresis.items()}

    def window(self, signal: str) -> Any:
        """The signal's rule window, or None when the signal does not apply to this run."""
        judge = self.judges.get(signal)
        return None if judge is None else judge.window

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> str:
        state: dict[str, Any] = {judge.key(): judge.window for judge in self.judges.values()}
        state |= {
            "hysteresis": self.hysteresis,
            "pending": self.pending.to_dict(),
            "roles": dict(self.spec.roles),
            "settings": self.spec.settings.to_dict(),  # read by the run page's guide lines
        }
        return json.dumps(state, allow_nan=True, default=dump_fields)

    @classmethod
    def from_json(cls, spec: HealthSpec, raw: str) -> RunHealth:
        data = json.loads(raw)
        # Resume under the roles the state was computed with: if the next segment's roles
        # differ, feed() adopts them exactly as it would have live.
        spec = replace(spec, roles=data.get("roles", spec.roles))
        judges = {}
        for kind in _judge_kinds():
            if kind.applies(spec):
                saved = data.get(kind.key())
                judges[kind.signal] = kind(spec) if saved is None else kind.load(spec, saved)
        health = cls(spec, judges)
        health.hysteresis = {
            signal: load_dataclass(Hysteresis, gate) for signal, gate in data["hysteresis"].items()
        }
        health.pending = Pending.from_dict(data.get("pending"))
        return health


def spec_from_header(
    roles: Mapping[str, Any],
    health: Mapping[str, Any],
    prune_on: tuple[str, ...],
    planned_steps: int | None = None,
) -> HealthSpec:
    return HealthSpec(
        roles=dict(roles),
        settings=HealthSettings.from_dict(health),
        prune_on=tuple(prune_on),
        planned_steps=planned_steps,
    )


def _judge_kinds() -> list[type[Judge[Any]]]:
    """The registered signals' judges, each after the signals it depends on."""
    kinds = {spec.name: spec.judge for spec in registry.specs() if spec.judge is not None}
    ordered: list[type[Judge[Any]]] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        kind = kinds.get(name)
        if kind is None or kind in ordered:
            return
        if name in path:
            raise ValueError(f"signals depend on each other in a cycle: {' -> '.join(path)}")
        spec = registry.spec_of(name)
        for needed in spec.depends_on if spec else ():
            visit(needed, (*path, name))
        ordered.append(kind)

    for name in kinds:
        visit(name, ())
    return ordered


def _judges_for(
    spec: HealthSpec, current: Mapping[str, Judge[Any]], old: HealthSpec
) -> dict[str, Judge[Any]]:
    """The judges a run with `spec` needs: those it has are kept while their setup holds."""
    judges = {}
    for kind in _judge_kinds():
        if kind.applies(spec):
            have = current.get(kind.signal)
            if have is None or not kind.same_setup(old, spec):
                have = kind(spec)
            judges[kind.signal] = have
    return judges
