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

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

import pyarrow as pa

from trainlight.collectors.health.observations import SegmentRows, Series, extract
from trainlight.collectors.health.pending import Pending
from trainlight.collectors.health.rules import runaway_block
from trainlight.collectors.health.rules.catch import CatchRule, CatchWindow, Moments
from trainlight.collectors.health.rules.dead_relu import DeadReluRule, DeadReluWindow
from trainlight.collectors.health.rules.lca import LcaRule, LcaWindow
from trainlight.collectors.health.rules.nonfinite import NonfiniteRule, NonfiniteWindow
from trainlight.collectors.health.rules.runaway import KEYS as RUNAWAY_KEYS
from trainlight.collectors.health.rules.runaway import RunawayRule, RunawayWindow
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.time_scale import Levels
from trainlight.collectors.health.verdict import Hysteresis, Transition, Verdict
from trainlight.collectors.wire import LCA_TOTAL


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


Judged = tuple[int, int, Transition]  # (evaluation point's step, rule rank, the change)


class RunHealth:
    def __init__(self, spec: HealthSpec) -> None:
        self.spec = spec
        self.pending = Pending()
        self.nonfinite = NonfiniteWindow()
        self.dead = DeadReluWindow()
        self.runaway = RunawayWindow()
        self.lca = LcaWindow()
        self.catch: CatchWindow | None = _catch_window(spec)
        self.hysteresis: dict[str, Hysteresis] = {}

    def feed(
        self, table: pa.Table, spec: HealthSpec | None = None, *, final: bool = False
    ) -> FeedResult:
        """Advance by one segment; returns the state changes it caused.

        Only complete steps are judged (`Pending`); `final` (the run's last segment) completes
        the last one. Each rule is judged at its own evaluation points (readings, window
        closes), and the changes come out in the order of those points' steps, so the result
        over a run never depends on where its segments were cut."""
        if spec is not None and spec != self.spec:
            self._adopt(spec)
        keys = {*RUNAWAY_KEYS, LCA_TOTAL} | (self.catch.keys() if self.catch else set())
        rows = self.pending.take(extract(table, keys), final)
        settings = self.spec.settings
        judged: list[Judged] = []
        derived: list[tuple[int, str, float]] = []
        for step in self.nonfinite.update(rows):
            self._judge(judged, step, 0, "nonfinite", NonfiniteRule().evaluate(self.nonfinite))
        for step in self.dead.update(rows, settings):
            self._judge(judged, step, 1, "dead_relu", DeadReluRule(settings).evaluate(self.dead))
        plateaus = self._feed_catch(rows, final, judged, derived)
        self.runaway.planned = self.spec.planned_steps
        for part, plateau in _parts(rows, plateaus):
            self.runaway.content_flat_since = plateau
            block = runaway_block.advance(self.runaway, part, settings)
            if block is not None:
                self._judge_runaway(judged, block)
        for step in self.lca.update(rows, settings):
            self._judge(judged, step, 4, "lca", LcaRule(settings).evaluate(self.lca))
        judged.sort(key=lambda j: (j[0], j[1]))
        return FeedResult([change for _, _, change in judged], derived)

    def states(self) -> dict[str, str]:
        return {signal: h.state for signal, h in self.hysteresis.items()}

    def _feed_catch(
        self,
        rows: SegmentRows,
        final: bool,
        judged: list[Judged],
        derived: list[tuple[int, str, float]],
    ) -> list[tuple[int, int | None]]:
        """Judge catch at each window close (the last one, if the run ended on its last step);
        the content plateau's start from each close on (the first entry: before this
        segment's closes), for the runaway rule."""
        if self.catch is None:
            return [(-1, None)]
        self.runaway.has_content_role = True
        plateaus = [(-1, self.catch.plateau_since)]
        marks = self._catch_marks()
        rule, settings = CatchRule(self.spec.settings), self.spec.settings
        closes = self.catch.update(rows, settings, self.spec.planned_steps)
        for step in itertools.chain(closes, self.catch.finish(settings) if final else ()):
            self._judge(judged, step, 2, "catch", rule.evaluate(self.catch))
            derived += self._derived(marks)
            marks = self._catch_marks()
            if marks[0] != plateaus[-1][1]:
                plateaus.append((step, marks[0]))
        return plateaus

    def _judge_runaway(self, judged: list[Judged], block: runaway_block.Block) -> None:
        """Every reading of the block is an evaluation; only a change is worded."""
        gate = self.hysteresis.setdefault("runaway", Hysteresis(self.spec.settings.confirm))
        rule = RunawayRule(self.spec.settings)
        for i in gate.run(block.states):
            verdict = rule.evaluate(block.window_at(i))
            step = block.steps[i]
            judged.append((step, 3, Transition("runaway", block.states[i], step, verdict.reason)))

    def _judge(self, judged: list[Judged], point: int, rank: int, signal: str, v: Verdict) -> None:
        gate = self.hysteresis.setdefault(signal, Hysteresis(self.spec.settings.confirm))
        if gate.update(v):
            step = point if v.step is None else v.step
            judged.append((point, rank, Transition(signal, gate.state, step, v.reason)))

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
                "nonfinite": self.nonfinite,
                "dead": self.dead,
                "runaway": self.runaway,
                "lca": self.lca,
                "catch": self.catch,
                "hysteresis": self.hysteresis,
                "pending": self.pending.to_dict(),
                "roles": dict(self.spec.roles),
                "settings": self.spec.settings.to_dict(),  # read by the run page's guide lines
            },
            allow_nan=True,
            default=_fields,
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


def _fields(value: object) -> dict[str, Any]:
    """A rule state's fields, for `json.dumps` (as `asdict` gives them, without its deep copy,
    which took longer than judging a small segment)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    raise TypeError(f"cannot save {type(value).__name__} in a health state")


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved rule state's fields that `cls` still has (states saved by another version load)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _parts(
    rows: SegmentRows, plateaus: list[tuple[int, int | None]]
) -> Iterator[tuple[SegmentRows, int | None]]:
    """The runaway rows between catch's window closes, each with the plateau start in force."""
    if len(plateaus) == 1:
        yield rows, plateaus[0][1]
        return
    bounds = [step for step, _ in plateaus[1:]]
    for i, (_, plateau) in enumerate(plateaus):
        low = plateaus[i][0] if i else None
        high = bounds[i] if i < len(bounds) else None
        yield replace(rows, metrics=_between(rows.metrics, RUNAWAY_KEYS, low, high)), plateau


def _between(
    metrics: Mapping[str, Series], keys: Iterable[str], low: int | None, high: int | None
) -> dict[str, Series]:
    """The series of `keys` restricted to low <= step < high (None: unbounded)."""
    out: dict[str, Series] = {}
    for key in keys:
        if key in metrics:
            pairs = [
                (s, v)
                for s, v in zip(*metrics[key], strict=True)
                if (low is None or s >= low) and (high is None or s < high)
            ]
            out[key] = ([s for s, _ in pairs], [v for _, v in pairs])
    return out


def _catch_window(spec: HealthSpec) -> CatchWindow | None:
    roles = spec.catch_roles()
    if roles is None:
        return None
    adversary, content, gradient_penalty = roles
    return CatchWindow(adversary=adversary, content=content, gradient_penalty=gradient_penalty)
