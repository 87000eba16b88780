"""Ray Tune: stop the trials whose trainlight run turned red, wherever Ray schedules them.

    from ray import tune
    from trainlight.integrations.ray import TrainlightStopper, monitor_for_trial, report

    def trainable(config):
        with monitor_for_trial(config, store="http://trainlight-host:8050") as mon:
            for step in range(steps):
                loss = train_step(config["lr"])
                mon.log(step, loss=loss)
                if step % 10 == 9:
                    report(mon, {"loss": float(loss)})  # tune.report, plus the run's id

    stopper = TrainlightStopper("http://trainlight-host:8050")
    tune.Tuner(trainable, run_config=tune.RunConfig(stop=stopper)).fit()
    stopper.stopped  # trial id -> TrialStop(run_id, signal, reason)

Ray runs the trials in actors on any machine of the cluster; trainlight judges them where it
always does, next to the training (`prune_on`) and on the server. The two meet in the results:

- `monitor_for_trial(config, signals=..., **monitor_kwargs)`, inside the trainable, opens the
  trial's Monitor: named after the Tune trial, in the group of the experiment, its config the
  trial's config (with the trial's id and name), `prune_on` the `signals`. `report(mon, metrics)`
  is `tune.report` with the run id (`trainlight_run_id`) added and, once the run was asked to
  stop, the reason (`trainlight_stop`). That flag costs no I/O: the Monitor judges `prune_on`
  at each flush itself, and hears of stops asked for on the dashboard as always.
- `TrainlightStopper(server, signals=...)` runs in the driver. It stops a trial whose result
  carries a stop reason, and, with `server`, also asks `GET /api/v1/runs/<run_id>` for the run's
  health: any of `signals` red, or a stop requested there, stops the trial (runs opened without
  `monitor_for_trial` only need `trainlight_run_id` in their results). At most one request per
  trial per `poll_interval_s`, each cut off after `timeout_s`. An unreachable or refusing
  server is "no verdict": one warning, then at most one try per `poll_interval_s` for the whole
  sweep, and the sweep goes on. Why each trial stopped is kept in `stopped` and logged.
- Tune ends a stopped function trainable by raising `SystemExit` inside `tune.report`, then
  exits the actor process. `monitor_for_trial` closes the run "stopped" on that `SystemExit`
  (reason: its stop request's, e.g. "auto-pruned: nonfinite red: ...", else "stopped by Ray
  Tune"), and holds the actor's exit (an `atexit` hook) until that close is done, so the end of
  the run is delivered; other exceptions close it "crashed", a normal return "finished".

Pass the same `signals` to both sides (both default to DEFAULT_SIGNALS): the driver cannot see
the trainable's arguments. No stop request is ever sent: every red `prune_on` signal has
already asked the server to stop the run, which is what marks it stopped on the dashboard.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any
from urllib.parse import quote

try:
    import ray.tune
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "trainlight.integrations.ray needs Ray Tune: pip install 'ray[tune]>=2.40'"
    ) from exc

from trainlight.collectors import Monitor
from trainlight.collectors.deadline_http import DeadlineClient
from trainlight.collectors.monitor import DEFAULT_CLOSE_TIMEOUT_S
from trainlight.collectors.schema import is_valid_run_id
from trainlight.collectors.wire import TOKEN_ENV
from trainlight.integrations.prune_signals import DEFAULT_SIGNALS

RUN_ID_KEY = "trainlight_run_id"
STOP_KEY = "trainlight_stop"
RED = "red"
TUNE_STOP_REASON = "stopped by Ray Tune"

logger = logging.getLogger(__name__)
_AUTO_PRUNED = re.compile(r"auto-pruned: (\S+) red: ")


@dataclass(frozen=True)
class TrialStop:
    """Why the stopper stopped a trial."""

    run_id: str
    signal: str | None  # the red signal; None: a stop asked for on the dashboard or the API
    reason: str  # e.g. "auto-pruned: nonfinite red: loss = inf at step 12"


class TrainlightStopper(ray.tune.Stopper):
    """Stops the trials whose trainlight run turned red (see the module's docstring)."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        signals: Iterable[str] = DEFAULT_SIGNALS,
        poll_interval_s: float = 5.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.signals = tuple(signals)
        if not self.signals:
            raise ValueError("signals must name at least one trainlight signal")
        if poll_interval_s < 0 or timeout_s <= 0:
            raise ValueError(f"bad intervals: poll {poll_interval_s!r} s, timeout {timeout_s!r} s")
        self.server = server.rstrip("/") if server else None
        self.token = token
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.stopped: dict[str, TrialStop] = {}
        self._polled: dict[str, float] = {}  # trial id -> when its run was last asked for
        self._quiet_until = float("-inf")  # after a failure, no request before this
        self._warned: set[str] = set()
        self._client: DeadlineClient | None = None  # made on first use: stoppers are pickled

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if trial_id in self.stopped:
            return True
        run_id = result.get(RUN_ID_KEY)
        if not isinstance(run_id, str) or not is_valid_run_id(run_id):
            return False
        reason = result.get(STOP_KEY)
        stop = _stop_of(run_id, reason) if isinstance(reason, str) and reason else None
        if stop is None and self.server is not None and self._poll_due(trial_id):
            stop = self._ask_server(run_id)
        if stop is None:
            return False
        self.stopped[trial_id] = stop
        logger.info("trainlight: stopping trial %s (run %s): %s", trial_id, run_id, stop.reason)
        return True

    def stop_all(self) -> bool:
        return False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}  # a live connection does not pickle

    # -- the server's verdict ----------------------------------------------------------------
    def _poll_due(self, trial_id: str) -> bool:
        now = self.clock()
        last = self._polled.get(trial_id)
        if now < self._quiet_until or (last is not None and now - last < self.poll_interval_s):
            return False
        self._polled[trial_id] = now
        return True

    def _ask_server(self, run_id: str) -> TrialStop | None:
        """The run's stop from `GET /api/v1/runs/<run_id>`; None: no verdict (yet)."""
        client = self._connect()
        try:
            deadline = time.monotonic() + self.timeout_s  # the client's clock, not ours
            reply = client.request("GET", f"/api/v1/runs/{quote(run_id)}", deadline)
        except (OSError, HTTPException) as exc:
            self._no_verdict("unreachable", f"cannot reach {self.server} ({exc})")
            return None
        if reply.status == 404:
            return None  # the server has not ingested the run's first segment yet
        if reply.status != 200:
            self._no_verdict(str(reply.status), f"{self.server} answered {reply.status}")
            return None
        try:
            return self._stop_from_run(run_id, json.loads(reply.content))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._no_verdict("malformed", f"unexpected answer from {self.server} ({exc})")
            return None

    def _stop_from_run(self, run_id: str, run: Mapping[str, Any]) -> TrialStop | None:
        """A red signal of ours, or a stop someone asked for; the run's own reason if it says."""
        health: Mapping[str, str] = run["health"]
        reason = str(run["stop_reason"] or "")
        red = next((s for s in self.signals if health.get(s) == RED), None)
        if red is not None:
            said = _stop_of(run_id, reason)  # the auto-prune's reason has the verdict's words
            return said if said.signal == red else TrialStop(run_id, red, f"{red} red")
        return _stop_of(run_id, reason or "stop requested") if run["stop_requested"] else None

    def _connect(self) -> DeadlineClient:
        if self._client is None:
            token = self.token if self.token is not None else os.environ.get(TOKEN_ENV)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            self._client = DeadlineClient(str(self.server), headers, self.timeout_s)
        return self._client

    def _no_verdict(self, kind: str, message: str) -> None:
        """Log once per kind of trouble; keep quiet (no requests) for one poll interval."""
        self._quiet_until = self.clock() + self.poll_interval_s
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning("trainlight: no verdicts for now: %s; the sweep goes on", message)


def _stop_of(run_id: str, reason: str) -> TrialStop:
    """A run's stop reason as a TrialStop, with the signal an auto-prune names."""
    match = _AUTO_PRUNED.match(reason)
    return TrialStop(run_id, match.group(1) if match else None, reason)


# -- inside the trainable ----------------------------------------------------------------------
@contextmanager
def monitor_for_trial(
    config: Mapping[str, Any], *, signals: Iterable[str] = DEFAULT_SIGNALS, **monitor: Any
) -> Iterator[Monitor]:
    """The trial's Monitor (see the module's docstring), closed when the block ends.

    `config` is the trainable's own argument; `monitor` takes `Monitor`'s keyword arguments
    (`store`, `project`, `flush_interval`, ...; `run`, `group`, `prune_on` override ours).
    """
    context = ray.tune.get_context()  # outside a Tune session: None each (Ray warns)
    trial = {
        "experiment": context.get_experiment_name() or "",
        "trial_id": context.get_trial_id() or "",
        "trial_name": context.get_trial_name() or "",
    }
    kwargs: dict[str, Any] = {
        "group": trial["experiment"],
        "config": {**config, "ray": trial},
        "prune_on": tuple(signals),
        **monitor,
    }
    mon = Monitor(kwargs.pop("run", None) or trial["trial_name"] or "ray trial", **kwargs)
    closer = _Closer(mon)
    atexit.register(closer.at_exit)  # after Monitor's own hook, so it runs first
    try:
        yield mon
    except SystemExit:  # how Tune ends a trial it stops: raised inside tune.report
        closer.close("stopped", TUNE_STOP_REASON)
        raise
    except BaseException:
        closer.close("crashed")
        raise
    else:
        closer.close(None)
    finally:
        atexit.unregister(closer.at_exit)


def report(mon: Monitor, metrics: Mapping[str, Any], **tune_kwargs: Any) -> None:
    """`ray.tune.report(metrics, **tune_kwargs)` with the run's id and its stop reason, if any."""
    extra: dict[str, Any] = {RUN_ID_KEY: mon.run_id}
    if mon.should_stop():
        extra[STOP_KEY] = mon.stop_reason or "stop requested"
    ray.tune.report({**metrics, **extra}, **tune_kwargs)


class _Closer:
    """Closes a trial's Monitor once, from the trial's thread or the actor's exit hook.

    Tune runs the trainable on a daemon thread and exits the actor right after stopping it:
    the exit hook waits (bounded) for a close already under way, or closes the run itself.
    """

    def __init__(self, mon: Monitor) -> None:
        self.mon = mon
        self._lock = threading.Lock()

    def close(self, status: str | None, reason: str = "") -> None:
        if self._lock.acquire(timeout=DEFAULT_CLOSE_TIMEOUT_S + 1):
            try:
                self.mon.close(status, reason=reason)  # idempotent: a second close is a no-op
            finally:
                self._lock.release()

    def at_exit(self) -> None:
        self.close("stopped", TUNE_STOP_REASON)
