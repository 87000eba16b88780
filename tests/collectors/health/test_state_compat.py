"""Saved health states: one saved by release 21 (before the judges were generic) still loads and
resumes exactly; every state round-trips through JSON at any cut."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.health_stream import ROLES, health_segments
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.rules.catch import CatchWindow, Moments
from trainlight.collectors.health.rules.dead_relu import DeadReluWindow
from trainlight.collectors.health.time_scale import Levels
from trainlight.collectors.health.verdict import Transition

SAVED_BY_RELEASE_21 = Path(__file__).parents[2] / "data" / "health_state_release21.json"
SAVED_AFTER = 6  # segments of `health_segments()` fed before that state was saved


def test_a_state_saved_by_release_21_resumes_as_if_never_saved() -> None:
    segments = health_segments()
    spec = HealthSpec(roles=ROLES)
    straight = RunHealth(spec)
    for table in segments[:SAVED_AFTER]:
        straight.feed(table)
    saved = json.loads(SAVED_BY_RELEASE_21.read_text())
    resumed = RunHealth.from_json(spec, SAVED_BY_RELEASE_21.read_text())
    assert _as_of_release_21(resumed, saved) == _as_of_release_21(straight, saved)
    catch, dead = resumed.window("catch"), resumed.window("dead_relu")
    assert isinstance(catch, CatchWindow) and isinstance(catch.adv, Moments)
    assert isinstance(catch.levels, Levels) and all(type(e) is tuple for e in catch.pending)
    assert isinstance(dead, DeadReluWindow) and dead.spike == ("fc2", 28.0, 8.0, 200)
    changes = []
    for i, table in enumerate(segments[SAVED_AFTER:]):
        final = i == len(segments) - SAVED_AFTER - 1
        expected = _release_21_changes(straight.feed(table, final=final).transitions, saved)
        got = _release_21_changes(resumed.feed(table, final=final).transitions, saved)
        assert got == expected
        changes += got
    assert {change.signal for change in changes} >= {"catch", "nonfinite", "dead_relu"}
    assert _as_of_release_21(resumed, saved) == _as_of_release_21(straight, saved)


def _as_of_release_21(health: RunHealth, saved: dict[str, Any]) -> dict[str, Any]:
    """The parts of a state that release 21 saved: signals added since start afresh, and the
    rows of the held step that only they read were not kept."""
    state = json.loads(health.to_json())
    state["hysteresis"] = {k: v for k, v in state["hysteresis"].items() if k in saved["hysteresis"]}
    held, held_then = state["pending"]["metrics"], saved["pending"]["metrics"]
    state["pending"]["metrics"] = {k: v for k, v in held.items() if k in held_then}
    return {key: state[key] for key in saved}


def _release_21_changes(changes: list[Transition], saved: dict[str, Any]) -> list[Transition]:
    return [change for change in changes if change.signal in saved["hysteresis"]]


def test_every_state_round_trips_through_json() -> None:
    spec = HealthSpec(roles=ROLES)
    health = RunHealth(spec)
    for table in health_segments(seed=3, cut=23):
        health.feed(table)
        saved = health.to_json()
        again = RunHealth.from_json(spec, saved)
        assert again.to_json() == saved
        assert {name: type(j.window) for name, j in again.judges.items()} == {
            name: type(j.window) for name, j in health.judges.items()
        }
