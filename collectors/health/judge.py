"""What `RunHealth` asks of a signal: a `Judge` owns the signal's window and feeds it rows.

A signal's rule module subclasses `Judge` for its window class and names it in its `SignalSpec`;
`RunHealth` builds one judge per registered signal that applies to the run, feeds them in
dependency order, and saves and restores their windows generically (state_codec.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from trainlight.collectors.health.observations import SegmentRows
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.state_codec import load_dataclass
from trainlight.collectors.health.verdict import Hysteresis, Transition, Verdict


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


Judged = tuple[int, int, Transition]  # (evaluation point's step, rank, the change)


@dataclass
class FeedContext:
    """One segment's complete rows on their way through the judges, and what they produce."""

    spec: HealthSpec
    rows: SegmentRows
    final: bool  # the run's last segment: its last step is complete
    hysteresis: dict[str, Hysteresis]
    sent_at: float | None = None  # unix seconds the segment was sent (heartbeats too)
    top_step: int | None = None  # the highest step seen so far, complete or not
    judged: list[Judged] = field(default_factory=list)
    derived: list[tuple[int, str, float]] = field(default_factory=list)  # metric rows made
    shared: dict[str, Any] = field(default_factory=dict)  # left by a judge for its dependants

    def gate(self, signal: str) -> Hysteresis:
        return self.hysteresis.setdefault(signal, Hysteresis(self.spec.settings.confirm))

    def judge(self, point: int, rank: int, signal: str, verdict: Verdict) -> None:
        """Offer a verdict reached at evaluation point `point`; record it if the badge changes."""
        gate = self.gate(signal)
        if gate.update(verdict):
            step = point if verdict.step is None else verdict.step
            self.judged.append((point, rank, Transition(signal, gate.state, step, verdict.reason)))


W = TypeVar("W")


class Judge(Generic[W]):
    """One signal's window and how rows advance it. Subclasses set the class variables and
    implement `feed`; `applies` and `same_setup` say when the run's header calls for one."""

    signal: ClassVar[str]
    window_type: ClassVar[type[Any]]
    rank: ClassVar[int] = 100  # orders changes at one step: lower first
    state_key: ClassVar[str | None] = None  # the key its window is saved under (default: signal)

    def __init__(self, spec: HealthSpec, window: W | None = None) -> None:
        self.window: W = self.new_window(spec) if window is None else window

    @classmethod
    def applies(cls, spec: HealthSpec) -> bool:
        return True

    @classmethod
    def same_setup(cls, old: HealthSpec, new: HealthSpec) -> bool:
        """Whether a window built for `old` still serves `new` (else it is started afresh)."""
        return True

    @classmethod
    def key(cls) -> str:
        return cls.state_key or cls.signal

    def new_window(self, spec: HealthSpec) -> W:
        window: W = self.window_type()
        return window

    def keys(self) -> set[str]:
        """The metric keys this judge reads from a segment."""
        return set()

    def feed(self, ctx: FeedContext) -> None:
        raise NotImplementedError

    # -- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: HealthSpec, saved: Mapping[str, Any]) -> Judge[W]:
        window: W = load_dataclass(cls.window_type, cls.upgrade(dict(saved), spec))
        return cls(spec, window)

    @classmethod
    def upgrade(cls, saved: dict[str, Any], spec: HealthSpec) -> dict[str, Any]:
        """A window saved by an older release, brought up to date (fields it lacked)."""
        return saved


class Advancing(Protocol):
    def update(self, rows: SegmentRows, settings: HealthSettings) -> Iterator[int]: ...


class Evaluating(Protocol):
    def __init__(self, settings: HealthSettings) -> None: ...

    def evaluate(self, window: Any) -> Verdict: ...


A = TypeVar("A", bound=Advancing)


class RuleJudge(Judge[A]):
    """The common judge: the window yields its evaluation points from `update(rows, settings)`
    and `rule(settings).evaluate(window)` is the verdict at each."""

    rule: ClassVar[type[Evaluating]]

    def feed(self, ctx: FeedContext) -> None:
        settings = ctx.spec.settings
        rule = self.rule(settings)
        for step in self.window.update(ctx.rows, settings):
            ctx.judge(step, self.rank, self.signal, rule.evaluate(self.window))
