"""`mon.landscape(model, probe_loss, every=K)`: a loss-surface slice every K steps, as rows.

The slice itself (the run's seeded direction filter-normalised to the weights of each slicing
step, probe passes that leave training untouched) is landscape.py; this is the schedule and the
rows. A slice is taken on the training thread when
`log()` reaches a step that is a multiple of `every` (it costs `points` forward passes of the
probe batch, the price the user chose with `every`) and handed to the flush thread as rows:

- `arrays` `landscape/slice`: one row, n_cols = points, the probe losses at α = -span … span;
- `metrics` `landscape/sharpness` (curvature at α = 0), `landscape/center` (loss at α = 0) and,
  once, `landscape/span`, `landscape/points` and `landscape/seed`, so a reader can rebuild the α
  axis and `trainlight landscape` the direction.
"""

from __future__ import annotations

import threading
from typing import Any

from torch import nn

from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.array_rows import array_rows
from trainlight.collectors.signals.landscape import LossSlice, LossSlicer
from trainlight.collectors.signals.lca_probe import ProbeLoss

SLICE_KEY = "landscape/slice"
SHARPNESS_KEY = "landscape/sharpness"
CENTER_KEY = "landscape/center"
SPAN_KEY = "landscape/span"
POINTS_KEY = "landscape/points"
SEED_KEY = "landscape/seed"


class LandscapeProbe:
    """Takes a slice every `every` steps; the flush thread collects the rows."""

    def __init__(
        self,
        model: nn.Module,
        probe_loss: ProbeLoss,
        problems: Problems,
        every: int = 100,
        points: int = 21,
        span: float = 1.0,
        seed: int = 0,
    ) -> None:
        if every < 1:
            raise ValueError(f"landscape every must be >= 1, got {every!r}")
        self.every = every
        self.span = float(span)
        self.seed = seed
        self.problems = problems
        self._slicer = LossSlicer(model, probe_loss, points=points, span=span, seed=seed)
        self._last_step: int | None = None
        self._pending: list[tuple[int, LossSlice]] = []
        self._described = False
        self._lock = threading.Lock()

    def maybe(self, step: int) -> None:
        """Slice now if `step` is a slicing step not sliced yet. Never raises."""
        if step % self.every or step == self._last_step:
            return
        self._last_step = step
        try:
            result = self._slicer.slice()
        except Exception as exc:
            self.problems.report("landscape_failed", f"landscape slice skipped: {exc!r}")
            return
        with self._lock:
            self._pending.append((step, result))

    def collect(self) -> list[dict[str, list[Any]]] | None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return None
        metrics: dict[str, list[Any]] = {"table": [], "step": [], "key": [], "value": []}
        for step, result in pending:
            scalars = {
                SHARPNESS_KEY: result.sharpness,
                CENTER_KEY: result.losses[len(result.losses) // 2],
            }
            if not self._described:
                scalars |= {
                    SPAN_KEY: self.span,
                    POINTS_KEY: float(len(result.alphas)),
                    SEED_KEY: float(self.seed),
                }
                self._described = True
            for key, value in scalars.items():
                for column, item in zip(
                    ("table", "step", "key", "value"), ("metrics", step, key, value), strict=True
                ):
                    metrics[column].append(item)
        arrays = array_rows([(step, SLICE_KEY, result.losses) for step, result in pending])
        return [metrics, arrays]
