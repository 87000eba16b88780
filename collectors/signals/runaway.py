"""`runaway` measurement: how far the generator's per-sample means drifted from the real data's.

A GAN generator "runs away" when its outputs drift off the real data's distribution (for audio,
typically a growing DC offset). The signal (DESIGN.md §5) compares the per-sample means of the
most recent generated samples with those of a real batch given once: two-sample KS distance,
its critical value at alpha = 0.01, and |median diff| / reference IQR (see `health/ks.py`).

Split like `log()`: `observe()` runs on the training thread every step, so it only launches the
per-sample mean (a device op, no sync) and appends the result to a bounded pending list; the flush
thread's `collect()` copies pending means to the host in one transfer per device, feeds them
into a ring of the `ring` most recent means, and emits rows at the first observed step of every
window of `every` steps. Rows are computed from the ring as it stood right after that step's
outputs were added, so they do not depend on when flushes happen. Failures are reported once
(and counted) through `Problems`; nothing raises into training.

So the dashboard can show *what* drifted and not only how far, the two distributions are written
too, as quantile rows (`runaway/ref_q`, `runaway/gen_q`; see `ks.py` for how to read them):
the reference's summary once per `mon.reference()` call, at the next reading, and
`gen_quantiles` quantiles of the ring every `gen_quantiles_every`-th reading. Rare and small
(33 rows every 100 steps by default), they cost nothing next to the readings themselves.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainlight.collectors.health.ks import (
    GENERATED_QUANTILES_KEY,
    REFERENCE_QUANTILES_KEY,
    FloatArray,
    ReferenceCDF,
    effect_size,
    ks_critical,
    ks_statistic,
    summary_quantiles,
)
from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.ring import Ring
from trainlight.collectors.wire import RUNAWAY_KEYS

DISTANCE, CRITICAL, EFFECT = RUNAWAY_KEYS
GEN_MEAN = "runaway/gen_mean"
REF_QUANTILES = REFERENCE_QUANTILES_KEY
GEN_QUANTILES = GENERATED_QUANTILES_KEY
ALPHA = 0.01

# (step, wall time in unix seconds, number of samples) of one observe() call
_Meta = tuple[int, float, int]


def per_sample_means(batch: torch.Tensor) -> torch.Tensor:
    """Detached mean over every non-batch dim (dim 0 is the batch), on the batch's device.

    Low-precision inputs are accumulated in float32 (float64 stays float64). No copy of the
    batch is made and nothing waits for the device.
    """
    if batch.dim() == 0:
        raise ValueError("expected a batch (dim 0 = samples), got a 0-d tensor")
    if batch.is_complex():
        raise TypeError(f"per-sample means of complex outputs are not defined ({batch.dtype})")
    dtype = torch.float64 if batch.dtype == torch.float64 else torch.float32
    detached = batch.detach()
    if detached.dim() == 1:
        return detached.to(dtype)
    return detached.mean(dim=tuple(range(1, detached.dim())), dtype=dtype)


@dataclass(frozen=True, eq=False)
class _Reference:
    """The real data as the distance needs it (`cdf`) and as the dashboard draws it."""

    cdf: ReferenceCDF
    quantiles: FloatArray  # ascending, at evenly spaced probabilities 0..1


class RunawayTracker:
    """Per-sample means of generated outputs vs. a real reference; a `writer.RowSource`.

    Args:
        problems: where failures are reported (once per kind) and counted.
        ring: how many of the most recent generated per-sample means the distance is taken on.
        every: rows are emitted at the first observed step of each window of `every` steps
            (steps 0, every, 2·every, ... when every step is observed).
        quantiles: size of the reference summary (a smaller reference sample is kept whole);
            it is also written once as `runaway/ref_q` rows.
        gen_quantiles: quantiles of the ring written as `runaway/gen_q` rows ...
        gen_quantiles_every: ... at every this-many-th reading (the first one included).
        max_pending: observe() calls held for the flush thread; beyond it the oldest are
            dropped (in chunks of up to `chunk` calls) and counted as `runaway_pending_full`.
        chunk: pending per-step means are concatenated (a device op) every `chunk` calls, so
            few tensor objects stay alive between flushes (see tensor_slots.py for why).
    """

    def __init__(
        self,
        *,
        problems: Problems,
        ring: int = 512,
        every: int = 10,
        quantiles: int = 257,
        gen_quantiles: int = 33,
        gen_quantiles_every: int = 10,
        max_pending: int = 8192,
        chunk: int = 64,
    ) -> None:
        for name, value, low in (
            ("ring", ring, 1),
            ("every", every, 1),
            ("quantiles", quantiles, 2),
            ("gen_quantiles", gen_quantiles, 2),
            ("gen_quantiles_every", gen_quantiles_every, 1),
            ("chunk", chunk, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(max_pending, int) or max_pending < chunk:
            raise ValueError(
                f"max_pending must be an integer >= chunk ({chunk}), got {max_pending}"
            )
        self.problems = problems
        self.every = every
        self.quantiles = quantiles
        self.gen_quantiles = gen_quantiles
        self.gen_quantiles_every = gen_quantiles_every
        self.max_pending = max_pending
        self.chunk = chunk
        self._reference: _Reference | None = None  # one attribute: swapped atomically
        self._reference_written: _Reference | None = None  # flush thread only
        self._readings = 0  # flush thread only
        self._lock = threading.Lock()  # guards the pending lists (training vs. flush thread)
        self._open: list[torch.Tensor] = []
        self._open_meta: list[_Meta] = []
        self._sealed: list[tuple[torch.Tensor, list[_Meta]]] = []
        self._pending = 0  # observe() calls held in _open and _sealed
        self._ring = Ring(ring)
        self._last_window: int | None = None

    # -- training thread -----------------------------------------------------------------------
    def reference(self, real: torch.Tensor) -> None:
        """Summarise a real batch's per-sample means (one host copy; a later call replaces it)."""
        try:
            means = per_sample_means(real).cpu().numpy().astype(np.float64)
            finite = means[np.isfinite(means)]
            if finite.size == 0:
                raise ValueError(f"none of the {means.size} real samples has a finite mean")
            if finite.size < means.size:
                self.problems.report(
                    "runaway_reference_nonfinite",
                    f"mon.reference(): {means.size - finite.size} of {means.size} real samples "
                    "have a NaN/Inf mean; they are left out of the runaway reference",
                )
            self._reference = _Reference(
                ReferenceCDF.from_sample(finite, self.quantiles),
                summary_quantiles(finite, self.quantiles),
            )
        except Exception as exc:  # monitoring must never crash training
            self.problems.report(
                f"runaway_reference:{type(exc).__name__}",
                f"mon.reference() failed, runaway distance unavailable: {exc!r}",
            )

    def observe(self, step: int, generated: torch.Tensor) -> None:
        """Queue the per-sample means of this step's generated batch. No device sync, no I/O."""
        try:
            means = per_sample_means(generated)
            meta = (int(step), time.time(), int(means.shape[0]))
            with self._lock:
                if self._open and self._open[0].device != means.device:
                    self._seal()
                self._open.append(means)
                self._open_meta.append(meta)
                self._pending += 1
                if len(self._open) >= self.chunk:
                    self._seal()
                dropped = self._drop_oldest() if self._pending > self.max_pending else 0
        except Exception as exc:  # monitoring must never crash training
            self.problems.report(
                f"runaway_observe:{type(exc).__name__}",
                f"mon.outputs() skipped generated outputs: {exc!r}",
            )
            return
        for _ in range(dropped):
            self.problems.report(
                "runaway_pending_full",
                f"runaway: more than {self.max_pending} generated batches waiting for the flush "
                "thread; dropping the oldest",
            )

    def _seal(self) -> None:
        """Concatenate the open per-step means into one tensor (caller holds the lock)."""
        if self._open:
            joined = self._open[0] if len(self._open) == 1 else torch.cat(self._open)
            self._sealed.append((joined, self._open_meta))
            self._open, self._open_meta = [], []

    def _drop_oldest(self) -> int:
        """Drop the oldest chunk (caller holds the lock); the number of calls dropped."""
        if not self._sealed:
            self._seal()
        _, metas = self._sealed.pop(0)
        self._pending -= len(metas)
        return len(metas)

    # -- flush thread --------------------------------------------------------------------------
    def collect(self) -> dict[str, list[Any]] | None:
        """Metric rows for every emission step observed since the last call, or None."""
        try:
            with self._lock:
                self._seal()
                sealed, self._sealed = self._sealed, []
                self._pending = 0
            if not sealed:
                return None
            return self._rows(sealed)
        except Exception as exc:  # a raising source would lose the whole segment
            self.problems.report(
                f"runaway_collect:{type(exc).__name__}",
                f"runaway rows skipped: {exc!r}",
            )
            return None

    def window(self) -> FloatArray:
        """The per-sample means the latest rows were computed on (a copy, oldest first)."""
        return self._ring.values()

    def _rows(self, sealed: list[tuple[torch.Tensor, list[_Meta]]]) -> dict[str, list[Any]] | None:
        reference = self._reference
        columns: dict[str, list[Any]] = {"step": [], "key": [], "value": [], "wall_time": []}
        hosts = _to_host([tensor for tensor, _ in sealed])
        for host, (_, metas) in zip(hosts, sealed, strict=True):
            offset = 0
            for step, wall_time, size in metas:
                self._ring.extend(host[offset : offset + size])
                offset += size
                window = step // self.every
                if window == self._last_window:
                    continue
                self._last_window = window
                for key, value in self._measure(reference):
                    columns["step"].append(step)
                    columns["key"].append(key)
                    columns["value"].append(value)
                    columns["wall_time"].append(int(wall_time * 1_000_000))
        if not columns["step"]:
            return None
        return {"table": ["metrics"] * len(columns["step"]), **columns}

    def _measure(self, reference: _Reference | None) -> list[tuple[str, float]]:
        """(key, value) rows for the ring as it stands now, plus the rare quantile rows."""
        sample = self._ring.values()
        gen_mean = float(np.mean(sample)) if sample.size else math.nan
        rows = self._quantile_rows(sample, reference)
        if reference is None:
            self.problems.report(
                "runaway_no_reference",
                "mon.outputs() is recording generated outputs but mon.reference() was never "
                "called: only runaway/gen_mean (and its quantiles) is stored until a real batch "
                "is given",
            )
            return [(GEN_MEAN, gen_mean), *rows]
        cdf = reference.cdf
        return [
            (DISTANCE, ks_statistic(sample, cdf)),
            (CRITICAL, ks_critical(sample.size, cdf.count, ALPHA)),
            (EFFECT, effect_size(sample, cdf)),
            (GEN_MEAN, gen_mean),
            *rows,
        ]

    def _quantile_rows(
        self, sample: FloatArray, reference: _Reference | None
    ) -> list[tuple[str, float]]:
        """The reference's quantiles if not written yet; the ring's every n-th reading."""
        rows: list[tuple[str, float]] = []
        if reference is not None and reference is not self._reference_written:
            self._reference_written = reference
            rows += [(REF_QUANTILES, float(v)) for v in reference.quantiles]
        if self._readings % self.gen_quantiles_every == 0:
            rows += [
                (GEN_QUANTILES, float(v)) for v in summary_quantiles(sample, self.gen_quantiles)
            ]
        self._readings += 1
        return rows


def _to_host(tensors: Sequence[torch.Tensor]) -> list[FloatArray]:
    """Host float64 copies of `tensors`, with one device-to-host transfer per device."""
    by_device: dict[torch.device, list[int]] = {}
    for index, tensor in enumerate(tensors):
        by_device.setdefault(tensor.device, []).append(index)
    out: list[FloatArray] = [np.empty(0)] * len(tensors)
    for indices in by_device.values():
        parts = [tensors[i] for i in indices]
        joined = torch.cat(parts) if len(parts) > 1 else parts[0]
        host = joined.cpu().numpy().astype(np.float64)  # float64 after the copy: MPS has none
        offset = 0
        for i in indices:
            size = tensors[i].shape[0]
            out[i] = host[offset : offset + size]
            offset += size
    return out
