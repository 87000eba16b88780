"""`Monitor`: the few lines a training script adds to report its health.

The public surface is DESIGN.md §4. A Monitor owns one run: it picks the transport from `store`
(a directory, default `TRAINLIGHT_DIR` or `./trainlight-runs`, or an `http://` server URL), starts
the flush thread, and records how the run ended. `log()` is the hot path: it appends one tuple to
a bounded buffer and returns; conversion and I/O happen on the flush thread. In a
`torch.distributed` job the Monitors of all ranks make one run: rank 0 writes, the others only
take part in the few collectives of distributed.py (their `log()` returns at once).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any

import torch

from trainlight.collectors.buffer import RecordBuffer
from trainlight.collectors.distributed import StopVote, join_job
from trainlight.collectors.health.settings import HealthSettings
from trainlight.collectors.http_sink import HttpSink
from trainlight.collectors.monitor_probes import SignalProbes
from trainlight.collectors.problems import Problems
from trainlight.collectors.run_description import describe_run
from trainlight.collectors.run_header import MAX_ALERT_TEXT, MAX_ALERT_TITLE, USER_ALERT_LEVELS
from trainlight.collectors.scalars import host_scalar
from trainlight.collectors.schema import StoreLayout, make_run_id
from trainlight.collectors.signals.activations import ActivationWatcher
from trainlight.collectors.signals.gradients import GradientWatcher
from trainlight.collectors.signals.landscape_probe import LandscapeProbe
from trainlight.collectors.signals.predictions import PredictionRecorder
from trainlight.collectors.signals.runaway import RunawayTracker
from trainlight.collectors.sinks import InboxSink, NullSink, Sink
from trainlight.collectors.system_figures import SystemFigures
from trainlight.collectors.tensor_slots import TensorSlots
from trainlight.collectors.writer import RowSource, SegmentWriter

# How long `close()` without a timeout (also `with Monitor(...)` and the exit hook) may take.
DEFAULT_CLOSE_TIMEOUT_S = 10.0


class Monitor(SignalProbes):
    """Collects one training run's health data and ships it to a trainlight store.

    Args:
        run: human name of the run (any text; the url/path-safe id is `run_id`).
        project, group, tags, config: free-form descriptions stored with the run.
        store: None (TRAINLIGHT_DIR or ./trainlight-runs), a directory, or "http://host:port".
        flush_interval: seconds between flushes; a stop request is seen within two of them.
        buffer_size: records held before the oldest are dropped (and counted).
        heartbeat_interval: seconds of silence after which an empty segment says "alive".
        prune_on: signals (e.g. "nonfinite", "catch") whose turning red stops the run: the
            server's verdict, or this process's own when no server reads the store.
        health: HealthSettings (or a dict of overrides) for the health rules' thresholds.
        total_steps: the planned length, if known (a `total_steps`/`max_steps` config key
            counts too): `catch` and `runaway` then size their windows and patience to it.
        sink: a ready-made transport (tests, custom backends); overrides `store`.
        distributed: in an initialised `torch.distributed` job, build the Monitor on EVERY
            rank: one run is recorded, written by rank 0 alone (see distributed.py). False:
            this process records on its own (e.g. a Monitor built on rank 0 only).
    """

    def __init__(
        self,
        run: str,
        project: str = "",
        store: str | os.PathLike[str] | None = None,
        group: str = "",
        tags: Iterable[str] = (),
        config: Mapping[str, Any] | None = None,
        *,
        flush_interval: float = 1.0,
        buffer_size: int = 200_000,
        heartbeat_interval: float = 10.0,
        prune_on: Iterable[str] = (),
        health: HealthSettings | Mapping[str, Any] | None = None,
        total_steps: int | None = None,
        sink: Sink | None = None,
        distributed: bool = True,
    ) -> None:
        self.problems = Problems()
        header = describe_run(
            make_run_id(run),
            run,
            project=project,
            group=group,
            tags=tags,
            config=config,
            health=health,
            prune_on=prune_on,
            total_steps=total_steps,
        )
        self._ranks, self.run_id = None, header.run_id
        if distributed:  # every rank takes rank 0's run id
            self._ranks, self.run_id = join_job(self.problems, header.run_id)
        self._stop_vote = StopVote(self._ranks) if self._ranks else None
        self._leader = self._ranks is None or self._ranks.leader
        self.name = run
        self._buffer = RecordBuffer(buffer_size)
        self._slots = TensorSlots(problems=self.problems)
        self._device_log_lock = threading.Lock()
        self._last_step = -1
        self._watchers: list[ActivationWatcher | GradientWatcher] = []
        self._runaway: RunawayTracker | None = None
        self._predictions: PredictionRecorder | None = None
        self._landscapes: list[LandscapeProbe] = []
        self._writer = SegmentWriter(
            replace(header, run_id=self.run_id),
            self._buffer,
            self._slots,
            (sink or self._make_sink(store)) if self._leader else NullSink(),
            self.problems,
            flush_interval=flush_interval,
            heartbeat_interval=heartbeat_interval,
            step_of=lambda: self._last_step,
        )
        self._closed = False
        if self._leader:
            self.add_source(SystemFigures(lambda: self._last_step))
            self._writer.start()
        else:
            self._follow()
        atexit.register(self._close_at_exit)

    def _follow(self) -> None:
        """Ranks other than 0 keep no records: these calls return at once (rank 0 writes)."""
        ignore = _ignore
        self.log = ignore  # type: ignore[method-assign]
        self.outputs = ignore  # type: ignore[method-assign]
        self.reference = ignore  # type: ignore[method-assign]

    def _make_sink(self, store: str | os.PathLike[str] | None) -> Sink:
        if isinstance(store, str) and store.startswith(("http://", "https://")):
            return HttpSink(store, self.problems)
        return InboxSink(StoreLayout.resolve(store), self.problems)

    # -- hot path ------------------------------------------------------------------------------
    def log(self, step: int, **values: Any) -> None:
        """Record scalars (floats or 0-d tensors) for `step`. No device sync, no I/O, no raise."""
        try:
            step = int(step)
        except (TypeError, ValueError, OverflowError) as exc:
            self.problems.report("bad_step", f"log() skipped: step {step!r} is not an int ({exc})")
            return
        tensor_keys: list[str] | None = None
        tensors: list[torch.Tensor] = []
        for key, value in values.items():
            if value.__class__ is float:
                continue
            try:
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    if _read_now(value):
                        values[key] = float(value.item())
                        continue
                    # detach frees the autograd graph now; neither op syncs the device
                    tensors.append(value.detach().reshape(()) if value.dim() else value.detach())
                    tensor_keys = tensor_keys or []
                    tensor_keys.append(key)
                    continue
                values[key] = host_scalar(value)
            except Exception as exc:  # a value we cannot record never stops training
                values[key] = None
                self.problems.report(f"skipped:{key}", f"skipped values logged as {key!r}: {exc}")
        self._last_step = step
        if self._landscapes:
            for probe in self._landscapes:
                probe.maybe(step)
        if tensor_keys:
            # One lock keeps slots and records in the same order if several threads log.
            with self._device_log_lock:
                first = self._slots.put(tensors)
                for offset, key in enumerate(tensor_keys):
                    values[key] = first + offset  # an int in a record is a tensor slot
                self._buffer.append((step, time.time(), values))
            return
        self._buffer.append((step, time.time(), values))

    def roles(
        self,
        adversary: str | None = None,
        gradient_penalty: str | None = None,
        content: str | None = None,
        *,
        loss: str | None = None,
        val_loss: str | None = None,
        val_metric: str | None = None,
    ) -> None:
        """Name the logged keys that play each part: the main training loss (`spike`; default
        `loss`), its validation twin and a higher-is-better validation score (`overfit`;
        default: recognised by name, `val_loss`, `val_acc`, ...), and the GAN roles (enable
        `catch`). Roles named before and not named here are kept."""
        named = {
            "adversary": adversary,
            "gradient_penalty": gradient_penalty,
            "content": content,
            "loss": loss,
            "val_loss": val_loss,
            "val_metric": val_metric,
        }
        current = dict(self._writer.header.roles)
        self._update_header(roles=current | {k: v for k, v in named.items() if v})

    def _update_header(self, **changes: Any) -> None:
        writer = self._writer
        writer.header = replace(writer.header, **changes).validated()

    def alert(self, title: str, text: str = "", level: str = "warn") -> None:
        """Send an alert from training code (as W&B's and trackio's `alert`): it goes with the
        next segment, stamped with the latest logged step, and the server routes it to its alert
        destinations like a red verdict. `level`: info, warn or error. Never raises: a bad call
        is reported as a problem and skipped."""
        if not self._leader:
            return
        if not isinstance(title, str) or not title or not isinstance(text, str):
            self.problems.report("bad_alert", "alert() skipped: title and text must be strings")
            return
        if level not in USER_ALERT_LEVELS:
            self.problems.report(
                "bad_alert", f"alert() skipped: level must be one of {USER_ALERT_LEVELS}"
            )
            return
        self._writer.alerts.append(
            {
                "title": title[:MAX_ALERT_TITLE],
                "text": text[:MAX_ALERT_TEXT],
                "level": level,
                "step": self._last_step,
                "at": time.time(),
            }
        )

    def should_stop(self) -> bool:
        """True once a stop was requested (dashboard, API, or auto-prune). Costs no I/O.

        In a distributed job call it on every rank at the same point: rank 0 decides and every
        rank gets the same answer at the same call (one call after rank 0 saw the request).
        """
        if self._stop_vote is None:
            return self._writer.stop_request is not None
        return self._stop_vote(self._writer.stop_request is not None)

    @property
    def stop_reason(self) -> str | None:
        request = self._writer.stop_request
        return request.reason if request else None

    @property
    def last_step(self) -> int:
        """The step of the latest `log()` call (-1 before any): windows are stamped with it."""
        return self._last_step

    def add_source(self, source: RowSource) -> None:
        """Have the flush thread collect `source`'s rows into every segment."""
        self._writer.sources.append(source)

    @property
    def dropped_records(self) -> int:
        return self._buffer.dropped

    # -- lifecycle -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write out everything logged so far now (normally the flush thread does this)."""
        if self._leader:
            self._writer.flush()

    def close(
        self, status: str | None = None, timeout: float = DEFAULT_CLOSE_TIMEOUT_S, reason: str = ""
    ) -> None:
        """End the run: finished, or stopped when a stop was requested (`reason`: why, when no
        stop request says it: a framework's pruner or early stopping). Idempotent.

        Returns within `timeout` seconds (default 10, also for `with` and at exit) whatever
        the server does; segments not delivered by then stay in the outbox (one warning names
        it) and the next trainlight process using that outbox delivers them.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        # Every rank ends the same way; after a crash no rank waits for a collective.
        collective = status != "crashed" and self._ranks is not None and self._ranks.usable
        for watcher in self._watchers:
            watcher.remove(collective=collective)
        if self._stop_vote is not None and collective:
            self._stop_vote.close()
        if status is None:
            status = "stopped" if self._writer.stop_request is not None else "finished"
        reason = (self.stop_reason or reason) if status == "stopped" else ""
        if self._leader:
            self._writer.close(status, reason, timeout)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Closes with the default timeout (DEFAULT_CLOSE_TIMEOUT_S); crashed on an exception."""
        self.close("crashed" if exc_type is not None else None)

    def _close_at_exit(self) -> None:
        # The interpreter sets sys.last_type when it printed an uncaught exception.
        self.close("crashed" if getattr(sys, "last_type", None) else None)


def _ignore(*args: Any, **kwargs: Any) -> None:
    """What a non-writing rank does with a value."""


def _read_now(tensor: torch.Tensor) -> bool:
    """CPU values are read at once (0.3 µs, no sync to wait for); device values wait for the flush.

    Measured: keeping CPU scalars as tensors until the flush cost 4-40x more per `log()` (tensor
    bookkeeping and stacking) than reading them, and saved nothing.
    """
    return tensor.is_cpu
