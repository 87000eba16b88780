"""The demo's job pool: at most N trainings at once, crashes reported, Ctrl-C forwarded.

The jobs are real subprocesses (tiny `python -c` trainings that speak the demo's event protocol),
so what is tested is the real process handling, not a mock of it.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from trainlight.demo.events import Event
from trainlight.demo.jobs import (
    CANCELLED,
    CRASHED,
    FINISHED,
    RUNNING,
    STOPPED,
    WAITING,
    Job,
    JobPool,
    JobStatus,
    apply_event,
    conclude,
)

FAKE_TRAINING = textwrap.dedent(
    """
    import signal, sys, time
    from trainlight.demo.events import Event, encode
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if inherited as ignored
    name, steps, mode, record = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with open(record, "a") as f:
        f.write(f"start {name} {time.time()}\\n")
    print(encode(Event("start", run_id=name + "-id", total_steps=steps)), flush=True)
    try:
        for step in range(steps):
            time.sleep(0.02)
            print(encode(Event("step", step=step)), flush=True)
            if mode == "crash" and step == 2:
                raise RuntimeError("boom at step 2")
            if mode == "prune" and step == 4:
                print(encode(Event("end", step=step, status="stopped", reason="auto-pruned")))
                break
        else:
            print(encode(Event("end", step=steps - 1, status="finished")), flush=True)
    except KeyboardInterrupt:
        print(encode(Event("end", step=step, status="cancelled", reason="interrupted")))
    finally:
        with open(record, "a") as f:
            f.write(f"end {name} {time.time()}\\n")
    """
)


def fake_job(tmp_path: Path, name: str, steps: int = 10, mode: str = "ok") -> Job:
    record = tmp_path / "record.txt"
    argv = (sys.executable, "-c", FAKE_TRAINING, name, str(steps), mode, str(record))
    return Job(name, argv, steps, tmp_path / "logs" / f"{name}.log")


def max_overlap(record: Path) -> int:
    """The most fake trainings that were alive at the same moment, from their own records."""
    events = []
    for line in record.read_text().splitlines():
        kind, _, when = line.split()
        events.append((float(when), 1 if kind == "start" else -1))
    alive = peak = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):
        alive += change
        peak = max(peak, alive)
    return peak


def test_at_most_two_run_at_once_and_all_finish(tmp_path: Path) -> None:
    jobs = [fake_job(tmp_path, f"job{i}", steps=8) for i in range(5)]
    seen_running: list[int] = []
    pool = JobPool(jobs, max_running=2)
    statuses = pool.run(lambda s: seen_running.append(sum(x.state == RUNNING for x in s)), 0.05)
    assert [s.state for s in statuses] == [FINISHED] * 5
    assert [s.steps_done for s in statuses] == [8] * 5
    assert [s.run_id for s in statuses] == [f"job{i}-id" for i in range(5)]
    assert max(seen_running) == 2
    assert max_overlap(tmp_path / "record.txt") == 2


def test_a_crash_is_reported_with_its_error_and_the_others_go_on(tmp_path: Path) -> None:
    jobs = [
        fake_job(tmp_path, "first", steps=6),
        fake_job(tmp_path, "crasher", steps=6, mode="crash"),
        fake_job(tmp_path, "pruned", steps=10, mode="prune"),
        fake_job(tmp_path, "last", steps=6),
    ]
    statuses = JobPool(jobs, max_running=2).run(lambda s: None, 0.05)
    by_name = {s.name: s for s in statuses}
    crashed = by_name["crasher"]
    assert crashed.state == CRASHED and crashed.returncode == 1
    assert crashed.reason == "RuntimeError: boom at step 2"
    assert by_name["first"].state == FINISHED and by_name["last"].state == FINISHED
    pruned = by_name["pruned"]
    assert pruned.state == STOPPED and pruned.reason == "auto-pruned"
    assert (pruned.steps_done, pruned.saved_steps) == (5, 5)


def test_interrupt_forwards_sigint_and_cancels_the_waiting(tmp_path: Path) -> None:
    jobs = [fake_job(tmp_path, f"long{i}", steps=100_000) for i in range(3)]
    pool = JobPool(jobs, max_running=2)

    def interrupt_once_both_run(statuses: tuple[JobStatus, ...]) -> None:
        if sum(s.step >= 3 for s in statuses) == 2:
            pool.request_interrupt()

    statuses = pool.run(interrupt_once_both_run, 0.05)
    assert pool.interrupted
    assert [s.state for s in statuses] == [CANCELLED, CANCELLED, CANCELLED]
    assert [s.reason for s in statuses[:2]] == ["interrupted", "interrupted"]
    assert statuses[2].returncode is None  # never started
    assert all(s.returncode == 0 for s in statuses[:2])  # they closed cleanly
    record = (tmp_path / "record.txt").read_text().split()
    assert (record.count("start"), record.count("end")) == (2, 2)  # both ran their `finally`


def test_events_advance_a_status_and_the_exit_concludes_it() -> None:
    status = JobStatus("run", total_steps=100)
    assert status.state == WAITING
    status = apply_event(status, Event("start", run_id="run-1", total_steps=100))
    status = apply_event(status, Event("step", step=41))
    status = apply_event(status, Event("step", step=7))  # late lines never move it back
    assert (status.state, status.run_id, status.step) == (RUNNING, "run-1", 41)
    stopped = apply_event(status, Event("end", step=59, status=STOPPED, reason="auto-pruned"))
    assert conclude(stopped, 0, "", interrupted=False).saved_steps == 40
    died = conclude(status, -9, "", interrupted=False)
    assert (died.state, died.reason) == (CRASHED, "exited with code -9")
    traced = conclude(status, 1, "Traceback ...\n  ...\nValueError: bad\n\n", interrupted=False)
    assert traced.reason == "ValueError: bad"
    assert conclude(status, -2, "", interrupted=True).state == CANCELLED
    finished_late_crash = conclude(
        apply_event(status, Event("end", step=99, status=FINISHED)), 3, "oops", False
    )
    assert finished_late_crash.state == CRASHED  # a non-zero exit is never a clean finish


def test_max_running_is_checked() -> None:
    with pytest.raises(ValueError, match="max_running must be >= 1, got 0"):
        JobPool([], max_running=0)
