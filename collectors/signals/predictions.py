"""`mon.predictions(step, probs)`: a fixed probe set's predicted probabilities, every K steps.

Replicas of one configuration (same `group`, different seeds) can reach the same loss and still
disagree on many examples. The dashboard measures that (relative prediction difference and top-1
disagreement, collectors/health/prediction_difference.py) by comparing what each replica predicted
for the same probe examples at the same step, so the collector only has to record them: the
probabilities as float32, at most `max_examples` rows (the first ones: the probe set must be
the same, in the same order, on every replica), every `every` steps.

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
        self._pending: list[tuple[int, torch.Tensor]] = []
        self._lock = threading.Lock()

    def observe(self, step: int, probs: Any) -> None:
        """Record `probs` for `step` when it is a recording step. No sync, never raises."""
        try:
            if int(step) % self.every:
                return
            kept = self._checked(probs)
            if kept is not None:
                with self._lock:
                    self._pending.append((int(step), kept))
        except Exception as exc:
            self.problems.report("predictions_skipped", f"predictions() skipped: {exc!r}")

    def collect(self) -> dict[str, list[Any]] | None:
        """`arrays` rows for the records kept since the last call, or None."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return None
        # A [examples] record is one probability per example: examples x 1.
        return array_rows(
            [
                (step, PREDICTIONS_KEY, host if host.ndim == 2 else host[:, None])
                for step, host in ((step, tensor.cpu().numpy()) for step, tensor in pending)
            ]
        )

    def _checked(self, probs: Any) -> torch.Tensor | None:
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
