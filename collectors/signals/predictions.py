"""`mon.predictions(step, probs, labels=)`: a fixed probe set's predicted probabilities, every K
steps, and optionally its true labels.

Replicas of one configuration (same `group`, different seeds) can reach the same loss and still
disagree on many examples. The dashboard measures that (absolute and relative prediction
difference, top-1 disagreement: collectors/health/prediction_difference.py) by comparing what each
replica predicted for the same probe examples at the same step, so the collector only has to
record them: the probabilities as float32, at most `max_examples` rows (the first ones: the probe
set must be the same, in the same order, on every replica), every `every` steps. The labels,
which the source's relative PD is taken on, are recorded once (the probe set is fixed), at the
first recording step that has them, as an [examples, 1] matrix under `predictions/labels`.

Like `log()`, `observe` never syncs the device: it keeps a detached float32 copy, and the flush
thread copies it to the host. A record is [examples] (binary) or [examples, classes].
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.array_rows import array_rows

PREDICTIONS_KEY = "predictions"  # `arrays` rows: n_rows examples × n_cols classes
LABELS_KEY = "predictions/labels"  # one `arrays` row: n_rows examples × 1 class index
MAX_EXAMPLES = 4096


class PredictionRecorder:
    """Keeps every `every`-th step's probe probabilities until the flush thread collects them."""

    def __init__(
        self, problems: Problems, every: int = 50, max_examples: int = MAX_EXAMPLES
    ) -> None:
        if every < 1:
            raise ValueError(f"predictions every must be >= 1, got {every!r}")
        if not 1 <= max_examples <= MAX_EXAMPLES:
            raise ValueError(f"max_examples must be in 1..{MAX_EXAMPLES}, got {max_examples!r}")
        self.every = every
        self.max_examples = max_examples
        self.problems = problems
        self._pending: list[tuple[int, str, torch.Tensor]] = []
        self._labels_kept = False
        self._lock = threading.Lock()

    def observe(self, step: int, probs: Any, labels: Any = None) -> None:
        """Record `probs` (and, once, `labels`) for `step` when it is a recording step. No sync,
        never raises."""
        try:
            if int(step) % self.every:
                return
            kept = self._checked(probs)
            with self._lock:
                self._pending.append((int(step), PREDICTIONS_KEY, kept))
        except Exception as exc:
            self.problems.report("predictions_skipped", f"predictions() skipped: {exc!r}")
            return
        if labels is not None and not self._labels_kept:
            self._observe_labels(int(step), labels, kept)

    def _observe_labels(self, step: int, labels: Any, probs: torch.Tensor) -> None:
        try:
            kept = self._checked_labels(labels, probs)
            with self._lock:
                self._pending.append((step, LABELS_KEY, kept))
            self._labels_kept = True
        except Exception as exc:
            self.problems.report("labels_skipped", f"predictions() labels skipped: {exc!r}")

    def collect(self) -> dict[str, list[Any]] | None:
        """`arrays` rows for the records kept since the last call, or None."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return None
        # A [examples] record (probabilities of one class, or labels) is examples x 1.
        return array_rows(
            [
                (step, key, host if host.ndim == 2 else host[:, None])
                for step, key, host in ((s, k, t.cpu().numpy()) for s, k, t in pending)
            ]
        )

    def _checked_labels(self, labels: Any, probs: torch.Tensor) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
            raise TypeError("labels must be a 1-D Tensor of class indices, one per example")
        if labels.dtype.is_floating_point or labels.dtype.is_complex:
            raise TypeError(f"labels must be integer class indices, got {labels.dtype}")
        labels = labels[: self.max_examples]
        if labels.shape[0] != probs.shape[0]:
            raise ValueError(f"{labels.shape[0]} labels for {probs.shape[0]} examples")
        return labels.detach().to(torch.float32, copy=True)

    def _checked(self, probs: Any) -> torch.Tensor:
        if not isinstance(probs, torch.Tensor):
            raise TypeError(f"probs must be a Tensor of probabilities, got {type(probs).__name__}")
        if probs.dim() not in (1, 2) or probs.shape[0] == 0:
            raise ValueError(
                f"probs must be [examples] or [examples, classes], got {tuple(probs.shape)}"
            )
        if probs.shape[0] > self.max_examples:
            self.problems.report(
                "predictions_truncated",
                f"predictions(): {probs.shape[0]} examples, keeping the first {self.max_examples}",
            )
            probs = probs[: self.max_examples]
        return probs.detach().to(torch.float32, copy=True)
