"""Saved health states: one saved by release 21 (before the judges were generic) still loads and
resumes exactly; every state round-trips through JSON at any cut."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.health_stream import ROLES, health_segments
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.rules.catch import CatchWindow, Moments
from trainlight.collectors.health.rules.dead_relu import DeadReluWindow
from trainlight.collectors.health.time_scale import Levels

SAVED_BY_RELEASE_21 = Path(__file__).parents[2] / "data" / "health_state_release21.json"
SAVED_AFTER = 6  # segments of `health_segments()` fed before that state was saved


def test_a_state_saved_by_release_21_resumes_as_if_never_saved() -> None:
    segments = health_segments()
    spec = HealthSpec(roles=ROLES)
    straight = RunHealth(spec)
    for table in segments[:SAVED_AFTER]:
        straight.feed(table)
    resumed = RunHealth.from_json(spec, SAVED_BY_RELEASE_21.read_text())
    assert json.loads(resumed.to_json()) == json.loads(straight.to_json())
    catch, dead = resumed.window("catch"), resumed.window("dead_relu")
    assert isinstance(catch, CatchWindow) and isinstance(catch.adv, Moments)
    assert isinstance(catch.levels, Levels) and all(type(e) is tuple for e in catch.pending)
    assert isinstance(dead, DeadReluWindow) and dead.spike == ("fc2", 28.0, 8.0, 200)
    changes = []
    for i, table in enumerate(segments[SAVED_AFTER:]):
        final = i == len(segments) - SAVED_AFTER - 1
        expected = straight.feed(table, final=final)
        got = resumed.feed(table, final=final)
        assert got == expected
        changes += got.transitions
    assert {change.signal for change in changes} >= {"catch", "nonfinite", "dead_relu"}
    assert json.loads(resumed.to_json()) == json.loads(straight.to_json())


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
