"""Run training processes, at most N at a time, and follow each through its event lines.

Pure part: `JobStatus` and the functions that advance it (`apply_event`, `conclude`). Thin shell:
`JobPool` starts the processes (each in its own session, so a Ctrl-C in the terminal reaches only
the orchestrator, which then forwards SIGINT to the trainings it started), reads their stdout on
one thread each, and hands every change to a callback. A training that crashes is reported with
the last line of its log; the others go on. Torch-free.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from trainlight.demo.events import Event, parse

WAITING, RUNNING, FINISHED, STOPPED, CRASHED, CANCELLED = (
    "waiting",
    "running",
    "finished",
    "stopped",
    "crashed",
    "cancelled",
)
DONE_STATES = (FINISHED, STOPPED, CRASHED, CANCELLED)
INTERRUPT_GRACE_S = 20.0  # how long interrupted trainings get to close their runs
EXIT_WAIT_S = 30.0  # after a training closed its stdout, how long until it must have exited


@dataclass(frozen=True)
class Job:
    name: str
    argv: tuple[str, ...]
    total_steps: int
    log_path: Path  # the process's stderr


@dataclass(frozen=True)
class JobStatus:
    name: str
    total_steps: int
    state: str = WAITING
    step: int = -1  # the last step run (-1: none yet)
    run_id: str = ""
    reason: str = ""
    returncode: int | None = None

    @property
    def steps_done(self) -> int:
        return self.step + 1

    @property
    def saved_steps(self) -> int:
        """Planned steps a stopped run did not spend."""
        return max(0, self.total_steps - self.steps_done) if self.state == STOPPED else 0

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES


def apply_event(status: JobStatus, event: Event) -> JobStatus:
    """The status after a training's event line."""
    if event.kind == "start":
        total = event.total_steps or status.total_steps
        return replace(status, state=RUNNING, run_id=event.run_id, total_steps=total)
    if event.kind == "step":
        return replace(status, step=max(status.step, event.step))
    state = event.status if event.status in DONE_STATES else CRASHED
    return replace(status, state=state, step=max(status.step, event.step), reason=event.reason)


def conclude(status: JobStatus, returncode: int, log_tail: str, interrupted: bool) -> JobStatus:
    """The final status once the process exited: its `end` event, or why it has none."""
    if status.state in (FINISHED, STOPPED, CANCELLED) and returncode == 0:
        return replace(status, returncode=returncode)
    if interrupted and status.state != CRASHED:
        return replace(status, state=CANCELLED, reason="interrupted", returncode=returncode)
    lines = [line.strip() for line in log_tail.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exited with code {returncode}"
    return replace(status, state=CRASHED, reason=reason, returncode=returncode)


def read_tail(path: Path, chars: int = 4000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - chars))
            return f.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"


_EOF = None


class JobPool:
    """Runs `jobs` with at most `max_running` processes alive at once."""

    def __init__(
        self, jobs: Sequence[Job], max_running: int = 2, env: Mapping[str, str] | None = None
    ) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {max_running}")
        self.jobs = tuple(jobs)
        self.max_running = max_running
        self._env = dict(env if env is not None else os.environ)
        self.statuses = [JobStatus(job.name, job.total_steps) for job in self.jobs]
        self._waiting = list(range(len(self.jobs)))
        self._processes: dict[int, subprocess.Popen[str]] = {}
        self._lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
        self._interrupt = threading.Event()
        self.interrupted = False

    def request_interrupt(self) -> None:
        """Stop: forward SIGINT to the running trainings, start no more (thread-safe)."""
        self._interrupt.set()

    def run(
        self, on_change: Callable[[tuple[JobStatus, ...]], None], refresh_s: float = 0.25
    ) -> tuple[JobStatus, ...]:
        """Run every job (or until interrupted); `on_change` sees the statuses as they move."""
        try:
            while self._waiting or self._processes:
                if self._interrupt.is_set():
                    self._interrupt_all(on_change)
                    break
                self._start_ready()
                self._drain(refresh_s)
                on_change(tuple(self.statuses))
        except KeyboardInterrupt:
            self._interrupt_all(on_change)
        on_change(tuple(self.statuses))
        return tuple(self.statuses)

    def _start_ready(self) -> None:
        while self._waiting and len(self._processes) < self.max_running:
            index = self._waiting.pop(0)
            job = self.jobs[index]
            job.log_path.parent.mkdir(parents=True, exist_ok=True)
            with job.log_path.open("w") as log:
                process = subprocess.Popen(
                    job.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    env=self._env,
                    start_new_session=True,
                )
            self._processes[index] = process
            self.statuses[index] = replace(self.statuses[index], state=RUNNING)
            threading.Thread(target=self._read, args=(index, process), daemon=True).start()

    def _read(self, index: int, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._lines.put((index, line))
        self._lines.put((index, _EOF))

    def _drain(self, timeout: float) -> None:
        """Apply every line available within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                index, line = self._lines.get(timeout=left)
            except queue.Empty:
                return
            if line is _EOF:
                self._finish(index)
                continue
            event = parse(line.rstrip("\n"))
            if event is not None:
                self.statuses[index] = apply_event(self.statuses[index], event)

    def _finish(self, index: int) -> None:
        process = self._processes.pop(index)
        try:
            code = process.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(timeout=EXIT_WAIT_S)
        tail = read_tail(self.jobs[index].log_path)
        self.statuses[index] = conclude(self.statuses[index], code, tail, self.interrupted)

    def _interrupt_all(self, on_change: Callable[[tuple[JobStatus, ...]], None]) -> None:
        """SIGINT to each running training, then wait (bounded) for them to close their runs."""
        self.interrupted = True
        for index in self._waiting:
            self.statuses[index] = replace(self.statuses[index], state=CANCELLED)
        self._waiting.clear()
        for process in self._processes.values():
            _signal(process, signal.SIGINT)
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        try:
            while self._processes and time.monotonic() < deadline:
                self._drain(0.25)
                on_change(tuple(self.statuses))
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: do not wait any longer
        for process in self._processes.values():
            _signal(process, signal.SIGKILL)
        for _ in range(int(EXIT_WAIT_S)):  # their stdout closes once they are gone
            if not self._processes:
                break
            self._drain(1.0)


def _signal(process: subprocess.Popen[str], signum: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
