"""`python -m trainlight.demo.train --store DIR --spec JSON`: one demo training, in its own process.

The orchestrator (`trainlight demo`) runs each training as a separate process, as users run
theirs: the only link to trainlight is the public `Monitor` API and the store directory. This
module reports progress to the orchestrator on stdout (see events.py). Ctrl-C (SIGINT, which the
orchestrator forwards) or SIGTERM ends the run cleanly: `stopped` in the store, `cancelled` to the
orchestrator (it saved no compute: someone quit); any other exception escapes the
`with Monitor(...)` block, so the run is recorded as `crashed` and the process exits non-zero.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import torch

from trainlight.collectors import Monitor
from trainlight.demo.digits import train_digits
from trainlight.demo.events import Event, encode
from trainlight.demo.gan import train_gan
from trainlight.demo.recipes import RunSpec

TRAININGS: dict[str, Callable[[Monitor, Any, int, int], None]] = {
    "gan": train_gan,
    "digits": train_digits,
}
PROGRESS_INTERVAL_S = 0.25
# Short flushes: the health rules judge once per segment, and a verdict must hold for `confirm`
# judgements in a row, so a few-second training needs many segments to be judged steadily.
FLUSH_INTERVAL_S = 0.2
HEARTBEAT_S = 1.0  # a hung demo run shows as stalled within seconds (the default is 10 s)
INTERRUPTED = "interrupted (Ctrl-C)"


class Reporter:
    """Prints events; a background thread reports the run's latest step a few times a second."""

    def __init__(self, mon: Monitor, interval: float = PROGRESS_INTERVAL_S) -> None:
        self._mon = mon
        self._interval = interval
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-progress", daemon=True)

    def emit(self, event: Event) -> None:
        with self._lock:
            print(encode(event), flush=True)

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        last = -2
        while not self._done.wait(self._interval):
            step = self._mon.last_step
            if step != last:
                self.emit(Event("step", step=step))
                last = step


def run(
    spec: RunSpec,
    store: str | None,
    flush_interval: float = FLUSH_INTERVAL_S,
    on_trained: Callable[[], None] = lambda: None,
) -> Event:
    """Train `spec` into `store`; returns the `end` event (also printed).

    `on_trained` runs once training is over (done, pruned or interrupted), before the run is
    closed: `main` uses it to let a late Ctrl-C no longer cut the closing flush short.
    """
    with Monitor(
        run=spec.name,
        project=spec.project,
        store=store,
        group=spec.group,
        tags=spec.tags,
        config=spec.config(),
        prune_on=spec.prune_on,
        health=spec.health or None,
        flush_interval=flush_interval,
        heartbeat_interval=max(flush_interval, HEARTBEAT_S),
    ) as mon:
        reporter = Reporter(mon)
        reporter.emit(Event("start", run_id=mon.run_id, total_steps=spec.steps))
        interrupted = False
        with reporter:
            try:
                TRAININGS[spec.family](mon, spec.recipe, spec.steps, spec.seed)
            except KeyboardInterrupt:
                interrupted = True
            on_trained()
        if interrupted:
            mon.close("stopped")
            end = Event("end", step=mon.last_step, status="cancelled", reason=INTERRUPTED)
        elif mon.should_stop():
            end = Event("end", step=mon.last_step, status="stopped", reason=mon.stop_reason or "")
        else:
            end = Event("end", step=mon.last_step, status="finished")
    reporter.emit(end)
    return end


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main(argv: Sequence[str] | None = None) -> int:
    # Our own handlers: an ignored SIGINT inherited from a background shell must not make the
    # orchestrator's Ctrl-C (or a plain `kill`) unable to end the run cleanly.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(prog="python -m trainlight.demo.train", description=__doc__)
    parser.add_argument("--spec", required=True, help="the RunSpec as JSON")
    parser.add_argument("--store", default=None, help="store directory")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run(RunSpec.from_json(args.spec), args.store, on_trained=_ignore_interrupts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
