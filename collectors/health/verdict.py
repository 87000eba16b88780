"""Verdicts, state changes, and the hysteresis that keeps badges from flickering."""

from __future__ import annotations

from dataclasses import dataclass

GREEN, AMBER, RED, GREY = "green", "amber", "red", "grey"
STATES = (GREEN, AMBER, RED, GREY)
_SEVERITY = {GREY: 0, GREEN: 1, AMBER: 2, RED: 3}
# How a state is drawn wherever colour may not reach (terminals, colour-blind readers, the badge
# glyphs of the grid, whose renderer gets this table as a parameter): one shape per state.
STATE_SHAPES = {GREEN: "●", AMBER: "▲", RED: "■", GREY: "○"}
STATE_WORDS = {GREEN: "ok", AMBER: "warning", RED: "bad", GREY: "no data"}  # what each shape means


def severity(state: str) -> int:
    """Rank for sorting: grey (unknown) < green < amber < red."""
    return _SEVERITY.get(state, 0)


def shapes_legend(separator: str = " ") -> str:
    """ "● ok ▲ warning ■ bad ○ no data": the key to the shapes, for every legend."""
    return separator.join(f"{STATE_SHAPES[s]} {STATE_WORDS[s]}" for s in STATE_SHAPES)


def state_label(state: str) -> str:
    return f"{STATE_SHAPES.get(state, '?')} {state}"


@dataclass(frozen=True)
class Verdict:
    """A rule's judgement after some data: the state, why, and the step it refers to."""

    state: str
    reason: str = ""
    step: int | None = None
    sticky: bool = False  # takes effect at once and never changes again (a NaN, a catch)


@dataclass(frozen=True)
class Transition:
    """A change of a signal's state: one row of the `health` table."""

    signal: str
    state: str
    step: int | None
    reason: str


def worst(states: list[str]) -> str:
    """The most severe state (grey < green < amber < red); grey for none."""
    return max(states, key=severity, default=GREY)


@dataclass
class Hysteresis:
    """Accepts a new state only after `confirm` consecutive verdicts agree (sticky: at once).

    The first verdict is always taken, a grey one with a reason included ("no verdict yet: ..."),
    so a signal whose inputs are present is never silently absent.
    """

    confirm: int
    state: str = GREY
    pending: str = GREY
    pending_count: int = 0
    locked: bool = False
    seen: bool = False

    def update(self, verdict: Verdict) -> bool:
        """Feed one verdict; True when the accepted state changed (or the first grey is told)."""
        first, self.seen = not self.seen, True
        if first and verdict.state == GREY and verdict.reason:
            return True
        return self.offer(verdict.state, verdict.sticky)

    def holds(self, state: str) -> bool:
        """Offer `state` if it cannot change the badge (the badge's own state, or a locked
        badge) and say so: a rule then need not word a verdict nobody would read."""
        if self.seen and (self.locked or state == self.state):
            self.pending_count = 0
            return True
        return False

    def offer(self, state: str, sticky: bool = False) -> bool:
        """Feed one evaluation's state (a verdict's reason is needed only when this is True)."""
        if self.locked or state == self.state:
            self.pending_count = 0
            return False
        if sticky:
            self.locked = True
            return self._accept(state)
        if state == self.pending:
            self.pending_count += 1
        else:
            self.pending, self.pending_count = state, 1
        if self.state == GREY or self.pending_count >= self.confirm:
            return self._accept(state)
        return False

    def run(self, states: list[str]) -> list[int]:
        """`offer` each (non-sticky) state in turn; the indices where the accepted state
        changed. One loop over local variables: runaway readings can come every step."""
        if self.locked:
            return []
        changed = []
        state, pending, count, confirm = self.state, self.pending, self.pending_count, self.confirm
        for i, new in enumerate(states):
            if new == state:
                count = 0
                continue
            if new == pending:
                count += 1
            else:
                pending, count = new, 1
            if state == GREY or count >= confirm:
                state, pending, count = new, new, 0
                changed.append(i)
        self.state, self.pending, self.pending_count = state, pending, count
        return changed

    def _accept(self, state: str) -> bool:
        self.state, self.pending, self.pending_count = state, state, 0
        return True
