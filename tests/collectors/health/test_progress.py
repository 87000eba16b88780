"""`progress`: the rule against a plain loop over send times, stalls and slowdowns judged from
segments and heartbeats, and a real training loop that hangs while its process lives."""

from __future__ import annotations

import itertools
import re
import statistics
import time
from pathlib import Path

import pytest

from tests.support.segments import rows_table
from trainlight.collectors.health.evaluator import HealthSpec, RunHealth
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.health.verdict import AMBER, GREEN, GREY, RED

FAST = HealthSettings(progress_stall_floor=30.0, progress_baseline=5, progress_window=5)
Segment = tuple[int | None, float, bool]  # (highest step in it, or None: heartbeat), sent, final


def naive_states(segments: list[Segment], s: HealthSettings) -> list[str]:
    """The rule as a plain loop: each segment re-reads the whole history of advances."""
    states = []
    for n in range(1, len(segments) + 1):
        seen = segments[:n]
        advances: list[tuple[int, float]] = []  # (new highest step, when first seen)
        for top, sent, _ in seen:
            if top is not None and (not advances or top > advances[-1][0]):
                advances.append((top, sent))
        rates = [
            (b[0] - a[0]) / (b[1] - a[1]) for a, b in itertools.pairwise(advances) if b[1] > a[1]
        ]
        now = max(sent for _, sent, _ in seen)
        ended = any(final for _, _, final in seen)
        if len(rates) < 3:
            states.append(GREY)
            continue
        recent = rates[-s.progress_window :]
        idle = now - advances[-1][1]
        patience = max(s.progress_stall_k / statistics.median(recent), s.progress_stall_floor)
        if not ended and idle > patience:
            states.append(RED)
        elif (
            len(rates) >= s.progress_baseline
            and len(recent) >= s.progress_window
            and statistics.median(rates[: s.progress_baseline]) / statistics.median(recent)
            > 1 / s.progress_slow
        ):
            states.append(AMBER)
        else:
            states.append(GREEN)
    return states


def judged(segments: list[Segment], s: HealthSettings = FAST) -> tuple[list[str], list[tuple]]:
    """(the window's state after each segment, the badge's changes) from a RunHealth fed the
    segments as the server would: rows up to each one's step, its send time."""
    health = RunHealth(HealthSpec(settings=s))
    states, changes, last = [], [], -1
    for top, sent, final in segments:
        rows = [(step, "loss", 1.0) for step in range(last + 1, top + 1)] if top else []
        last = max(last, top or -1)
        result = health.feed(rows_table(rows), final=final, sent_at=sent)
        states.append(health.window("progress").state(s))
        changes += [
            (t.state, t.step, t.reason) for t in result.transitions if t.signal == "progress"
        ]
    return states, changes


def steady(seconds: int, steps_per_s: float, start: float = 0.0, first: int = 0) -> list[Segment]:
    return [(first + int((i + 1) * steps_per_s), start + i + 1.0, False) for i in range(seconds)]


def test_a_steady_run_is_green_and_matches_the_plain_loop() -> None:
    segments = steady(60, 20.0)
    states, changes = judged(segments)
    assert states == naive_states(segments, FAST)
    assert [c[0] for c in changes] == [GREY, GREEN]


def test_heartbeats_without_a_new_step_turn_red_then_the_step_moving_clears_it() -> None:
    run = steady(20, 20.0)
    hang = [(None, 20.0 + 5 * i, False) for i in range(1, 12)]  # heartbeats every 5 s, 55 s
    resumed = steady(10, 20.0, start=75.0, first=400)
    segments = run + hang + resumed
    states, changes = judged(segments)
    assert states == naive_states(segments, FAST)
    red = next(c for c in changes if c[0] == RED)
    # red at the first heartbeat over 30 s, confirmed at the next (confirm = 2)
    assert red[1] == 400 and re.match(r"stalled at step 400 for 0\.[67] min", red[2])
    assert changes[-1][0] == GREEN


def test_a_slowdown_is_amber_with_the_factor() -> None:
    segments = steady(20, 20.0) + steady(20, 5.0, start=20.0, first=400)
    states, changes = judged(segments)
    assert states == naive_states(segments, FAST)
    amber = next(c for c in changes if c[0] == AMBER)
    assert "throughput fell 4.0x" in amber[2] and RED not in [c[0] for c in changes]


def test_a_finished_run_is_never_stalled_and_bare_tables_are_not_judged() -> None:
    segments = [*steady(10, 20.0), (200, 11.0, True), (None, 2000.0, False)]
    assert RED not in judged(segments)[0]
    health = RunHealth(HealthSpec(settings=FAST))
    health.feed(rows_table([(1, "loss", 1.0)]))
    assert health.window("progress").top is None


def test_a_slow_run_waits_its_own_time_per_step_times_k() -> None:
    slow = HealthSettings(progress_stall_floor=10.0)  # k = 10 x 60 s per step = 10 min
    run = [(i, 60.0 * i, False) for i in range(1, 6)]
    hang = [(None, 300.0 + 10.0 * i, False) for i in range(1, 71)]  # 11.7 more minutes
    states, _ = judged(run + hang, slow)
    assert states == naive_states(run + hang, slow)
    first_red = states.index(RED)
    assert (run + hang)[first_red][1] - 300.0 > 600.0


@pytest.mark.slow
def test_a_real_loop_that_hangs_is_red_and_pruned_while_a_steady_one_is_green(
    tmp_path: Path,
) -> None:
    from tests.support.health_replay import judged_states
    from trainlight.collectors import Monitor

    health = {"progress_stall_floor": 2.0, "progress_baseline": 5, "progress_window": 5}
    for name, hang_at in (("steady", None), ("hangs", 60)):
        kwargs = {"flush_interval": 0.1, "heartbeat_interval": 0.3, "health": health}
        with Monitor(run=name, store=tmp_path / name, prune_on=("progress",), **kwargs) as mon:
            for step in range(120):
                if step == hang_at:
                    deadline = time.monotonic() + 6.0
                    while time.monotonic() < deadline and not mon.should_stop():
                        time.sleep(0.05)  # a hung data loader: alive, no step
                time.sleep(0.02)
                mon.log(step, loss=1.0 / (step + 1))
                if mon.should_stop():
                    break
        states = judged_states(tmp_path / name, "progress")
        if hang_at is None:
            assert RED not in states and GREEN in states
            assert mon.stop_reason is None
        else:
            assert RED in states
            assert (mon.stop_reason or "").startswith("auto-pruned: progress red: stalled at step")


def test_send_times_that_repeat_or_go_backwards_never_crash_nor_fake_a_rate() -> None:
    """A clock stepped back (NTP), duplicated headers, a late segment: no division by zero, no
    negative rate, and idle time never negative."""
    segments = [
        *steady(10, 20.0),
        (220, 10.0, False),  # same send time as the one before
        (240, 5.0, False),  # sent "earlier" than the last
        (None, 4.0, False),  # a heartbeat from the past
        *steady(10, 20.0, start=11.0, first=240),
    ]
    states, _ = judged(segments)
    assert states == naive_states(segments, FAST) and RED not in states
    health = RunHealth(HealthSpec(settings=FAST))
    for top, sent, final in segments:
        health.feed(rows_table([(top, "loss", 1.0)] if top else []), final=final, sent_at=sent)
        window = health.window("progress")
        assert all(rate > 0 for rate in window.rates) and window.idle() >= 0
