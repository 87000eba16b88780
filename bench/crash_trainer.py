"""One real training process for the crash bench: tests/support/trainer.py, every line timestamped.

tests/support/processes.py's `Trainer` hands out one awaited line at a time; the crash bench needs
the whole step -> unix time history of a run (to say when its last stored step was logged) and its
fate (killed when, or exited how), so this wrapper keeps every `progress` line as it arrives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import TRAINER


@dataclass(frozen=True)
class TrainerSpec:
    name: str
    store: str  # a directory (inbox transport) or http://127.0.0.1:<port>
    transport: str  # "inbox" | "http", for the report
    steps: int
    flush: float
    step_sleep: float
    progress_every: int
    outbox: Path


class TrainerProcess:
    """A running tests/support/trainer.py; `progress` fills in as its stdout arrives."""

    def __init__(self, spec: TrainerSpec) -> None:
        self.spec = spec
        self.run_id: str | None = None
        self.progress: list[tuple[int, float]] = []  # (step, unix time it was logged)
        self.killed_at: float | None = None
        self.done_at: float | None = None  # when it printed `done` (its Monitor was closed)
        self.returncode: int | None = None
        self._stderr: list[str] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(TRAINER),
                *("--store", spec.store, "--run", spec.name, "--steps", str(spec.steps)),
                *("--flush-interval", str(spec.flush), "--step-sleep", str(spec.step_sleep)),
                *("--progress-every", str(spec.progress_every)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1",
                "TRAINLIGHT_OUTBOX": str(spec.outbox),
            },
        )
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    @property
    def exited(self) -> bool:
        return self.process.poll() is not None

    def eligible(self, min_running_s: float) -> bool:
        """Still training (not near its last step), and logging for at least `min_running_s`.

        A run past its last step is closing or exiting (interpreter shutdown takes seconds on
        a busy machine): killing it then would not kill a training.
        """
        if self.exited or self.done_at is not None or self.run_id is None or not self.progress:
            return False
        near_end = self.last_printed_step >= self.spec.steps - 10 * self.spec.progress_every
        return not near_end and time.time() - self.progress[0][1] >= min_running_s

    def kill(self) -> None:
        """SIGKILL now (if still running); the kill time is taken right after the signal."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.killed_at = time.time()
        self.process.wait(timeout=30)

    def finish(self) -> None:
        """Reap the process and read its output to the end (bounded)."""
        self.returncode = self.process.wait(timeout=60)
        self._out.join(10)
        self._err.join(10)

    @property
    def last_printed_step(self) -> int:
        return self.progress[-1][0] if self.progress else -1

    def time_of_step(self, step: int) -> float | None:
        """When `step` was logged, interpolated between progress lines (None before step 0)."""
        if not self.progress or step < 0:
            return None
        steps = [s for s, _ in self.progress]
        i = bisect_right(steps, step) - 1
        if i < 0:
            return None
        if i + 1 >= len(self.progress):  # past the last line: extrapolate at the last pace
            i = max(i - 1, 0)
        s0, t0 = self.progress[i]
        if i + 1 >= len(self.progress):
            return t0
        s1, t1 = self.progress[i + 1]
        return t0 + (t1 - t0) * (step - s0) / (s1 - s0)

    @property
    def stderr_tail(self) -> str:
        return "".join(self._stderr)[-1500:]

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if parts[:1] == ["run_id"] and len(parts) == 2:
                self.run_id = parts[1]
            elif parts[:1] == ["progress"] and len(parts) == 3:
                self.progress.append((int(parts[1]), float(parts[2])))
            elif parts == ["done"]:
                self.done_at = time.time()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)
