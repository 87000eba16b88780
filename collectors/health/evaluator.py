"""`RunHealth`: one run's health, advanced segment by segment, in sequence order.

Feeding the same segments in the same order always yields the same state changes at the same
steps, wherever it happens: on the server while the run trains, in a late `trainlight ingest`, or
inside the collector for auto-pruning. The state is plain JSON so the server can persist it in the
same transaction as the rows it was computed from, and resume after a restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import pyarrow as pa

from trainlight.collectors.health.observations import extract
from trainlight.collectors.health.rules.catch import CatchRule, CatchWindow, Moments
from trainlight.collectors.health.rules.dead_relu import DeadReluRule, DeadReluWindow
from trainlight.collectors.health.rules.lca import LcaRule, LcaWindow
from trainlight.collectors.health.rules.nonfinite import NonfiniteRule, NonfiniteWindow
from trainlight.collectors.health.rules.runaway import KEYS as RUNAWAY_KEYS
from trainlight.collectors.health.rules.runaway import RunawayRule, RunawayWindow
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.time_scale import Levels
from trainlight.collectors.health.verdict import Hysteresis, Transition, Verdict

ROLE_NAMES = ("adversary", "gradient_penalty", "content")


@dataclass(frozen=True)
class HealthSpec:
    """What a run's header says about judging it."""

    roles: Mapping[str, str] = field(default_factory=dict)
    settings: HealthSettings = field(default_factory=HealthSettings)
    prune_on: tuple[str, ...] = ()
    planned_steps: int | None = None  # the declared length: sets catch/runaway's time scale

    def catch_roles(self) -> tuple[str, str, str | None] | None:
        adversary, content = self.roles.get("adversary"), self.roles.get("content")
        if not adversary or not content:
            return None
        return adversary, content, self.roles.get("gradient_penalty") or None


@dataclass(frozen=True)
class FeedResult:
    transitions: list[Transition]
    derived: list[tuple[int, str, float]]  # metric rows the rules produced (catch steps)


class RunHealth:
    def __init__(self, spec: HealthSpec) -> None:
        self.spec = spec
        self.nonfinite = NonfiniteWindow()
        self.dead = DeadReluWindow()
        self.runaway = RunawayWindow()
        self.lca = LcaWindow()
        self.catch: CatchWindow | None = _catch_window(spec)
        self.hysteresis: dict[str, Hysteresis] = {}

    def feed(self, table: pa.Table, spec: HealthSpec | None = None) -> FeedResult:
        """Advance by one segment; returns the state changes it caused."""
        if spec is not None and spec != self.spec:
            self._adopt(spec)
        settings = self.spec.settings
        keys = {*RUNAWAY_KEYS, "lca/total"} | (self.catch.keys() if self.catch else set())
        rows = extract(table, keys)
        before = self._catch_marks()
        verdicts: dict[str, Verdict] = {}
        if self.nonfinite.update(rows):
            verdicts["nonfinite"] = NonfiniteRule().evaluate(self.nonfinite)
        if self.dead.update(rows, settings):
            verdicts["dead_relu"] = DeadReluRule(settings).evaluate(self.dead)
        planned = self.spec.planned_steps
        if self.catch is not None and self.catch.update(rows, settings, planned):
            verdicts["catch"] = CatchRule(settings).evaluate(self.catch)
        if self.catch is not None:
            self.runaway.has_content_role = True
            self.runaway.content_flat_since = self.catch.plateau_since
        self.runaway.planned = planned
        if self.runaway.update(rows, settings):
            verdicts["runaway"] = RunawayRule(settings).evaluate(self.runaway)
        if self.lca.update(rows, settings):
            verdicts["lca"] = LcaRule(settings).evaluate(self.lca)
        return FeedResult(self._transitions(verdicts, rows.last_step), self._derived(before))

    def states(self) -> dict[str, str]:
        return {signal: h.state for signal, h in self.hysteresis.items()}

    def _transitions(self, verdicts: dict[str, Verdict], last_step: int | None) -> list[Transition]:
        out = []
        for signal, verdict in verdicts.items():
            gate = self.hysteresis.setdefault(signal, Hysteresis(self.spec.settings.confirm))
            if gate.update(verdict):
                step = last_step if verdict.step is None else verdict.step
                out.append(Transition(signal, gate.state, step, verdict.reason))
        return out

    def _catch_marks(self) -> tuple[int | None, int | None]:
        return (self.catch.plateau_since, self.catch.caught_step) if self.catch else (None, None)

    def _derived(self, before: tuple[int | None, int | None]) -> list[tuple[int, str, float]]:
        plateau, caught = self._catch_marks()
        rows = []
        if plateau is not None and plateau != before[0]:
            rows.append((plateau, "catch/plateau_step", float(plateau)))
        if caught is not None and caught != before[1]:
            rows.append((caught, "catch/catch_step", float(caught)))
        return rows

    def _adopt(self, spec: HealthSpec) -> None:
        if spec.catch_roles() != self.spec.catch_roles():
            self.catch = _catch_window(spec)
        self.spec = spec

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "nonfinite": asdict(self.nonfinite),
                "dead": asdict(self.dead),
                "runaway": asdict(self.runaway),
                "lca": asdict(self.lca),
                "catch": asdict(self.catch) if self.catch else None,
                "hysteresis": {k: asdict(v) for k, v in self.hysteresis.items()},
                "roles": dict(self.spec.roles),
                "settings": self.spec.settings.to_dict(),  # read by the run page's guide lines
            },
            allow_nan=True,
        )

    @classmethod
    def from_json(cls, spec: HealthSpec, raw: str) -> RunHealth:
        data = json.loads(raw)
        # Resume under the roles the state was computed with: if the next segment's roles
        # differ, feed() adopts them exactly as it would have live.
        health = cls(replace(spec, roles=data.get("roles", spec.roles)))
        health.nonfinite = NonfiniteWindow(**_known(NonfiniteWindow, data["nonfinite"]))
        dead = data["dead"]
        dead["spike"] = tuple(dead["spike"]) if dead["spike"] else None
        health.dead = DeadReluWindow(**_known(DeadReluWindow, dead))
        runaway = data["runaway"]
        runaway["readings"] = [tuple(r) for r in runaway["readings"]]
        health.runaway = RunawayWindow(**_known(RunawayWindow, runaway))
        lca = data.get("lca")
        if lca is not None:
            for name in ("worst_layer", "last"):
                lca[name] = tuple(lca[name]) if lca[name] else None
            health.lca = LcaWindow(**_known(LcaWindow, lca))
        if data["catch"] is not None and health.catch is not None:
            catch = data["catch"]
            catch["adv"], catch["gp"] = Moments(**catch["adv"]), Moments(**catch["gp"])
            catch["levels"] = Levels(**catch.get("levels", {}))
            catch["pending"] = [tuple(e) for e in catch.get("pending", [])]
            if "window" not in catch:  # saved before windows were derived: 500 was the default
                catch["window"] = spec.settings.catch_window or 500
            health.catch = CatchWindow(**_known(CatchWindow, catch))
        health.hysteresis = {
            k: Hysteresis(**_known(Hysteresis, v)) for k, v in data["hysteresis"].items()
        }
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


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved rule state's fields that `cls` still has (states saved by another version load)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _catch_window(spec: HealthSpec) -> CatchWindow | None:
    roles = spec.catch_roles()
    if roles is None:
        return None
    adversary, content, gradient_penalty = roles
    return CatchWindow(adversary=adversary, content=content, gradient_penalty=gradient_penalty)
