"""Per-unit statistics of one activation call site over a window, kept on the output's device.

The arithmetic behind `ActivationWatcher` (see activations.py for the definitions and the
measurements that shaped it): per batch three ops fill row buffers; rows are folded into the
window with Chan's merge; a closed window becomes one small device tensor of `KEYS` values
followed by the `VAR_HIST_BINS` counts of its units' variances (collectors/schema.py
`VAR_HIST_LOG10`), computed on the device with the rest so the flush thread copies both at once.
In a distributed job a closed window's raw state (`WindowState`) is first merged with the other
ranks' windows of the same call site (Chan's merge again), so a unit is dead only if it fired on
no rank's data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainlight.collectors.schema import VAR_HIST_LOG10
from trainlight.collectors.wire import UNIT_STAT_KEYS

KEYS = UNIT_STAT_KEYS  # docs/design.md §3
VAR_HIST_BINS = len(VAR_HIST_LOG10) + 1  # below the first edge, between edges, from the last up
ROW_BUFFER_VALUES = 1 << 16  # per-batch row buffers: at most 256 KB (float32) each per call site


@dataclass(frozen=True)
class LayerSettings:
    """How one call site of one module is observed."""

    name: str
    window: int  # samples (batch elements) per window
    tau: float  # fired = output > tau
    unit_dim: int
    low_var_eps: float
    fired_from_mean: bool  # outputs are >= 0 and tau == 0: "max > 0" is "mean > 0"


class Scratch:
    """One reusable CPU buffer, shared by all layers, for squared deviations. Measured: a fresh
    3 MB CPU tensor per hook cost ~0.3 ms of page faults; CUDA's caching allocator needs no help."""

    def __init__(self) -> None:
        self._buffer = torch.empty(0)
        self._views: dict[tuple[torch.Size, torch.dtype], torch.Tensor] = {}

    def squared_deviations(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """(x - mean)² with `mean` broadcast, in `mean`'s dtype (float32 for half outputs)."""
        if x.dtype != mean.dtype:  # subtract in float32: squares would overflow float16
            out = torch.sub(x, mean)
            return out.mul_(out)
        if x.device.type != "cpu":
            return torch.ops.aten.mse_loss(x, mean, 0)  # reduction 0: elementwise, one pass
        key = (x.shape, x.dtype)
        if key not in self._views:
            if self._buffer.numel() < x.numel() or self._buffer.dtype != x.dtype:
                self._buffer = torch.empty(x.numel(), dtype=x.dtype)
                self._views.clear()
            self._views[key] = self._buffer[: x.numel()].view(x.shape)
        return torch.ops.aten.mse_loss.out(x, mean, 0, out=self._views[key])


class UnitStats:
    """Per-unit statistics of one call site over the current window, on the output's device.

    Each batch fills the next row of [rows, units] buffers (mean, squared deviation sum, maximum);
    rows are folded into the window (fired, non-finite, Chan's merge) when the buffers are full,
    the batch size changes, or the window closes: one fold per many batches.
    """

    def __init__(self, settings: LayerSettings, units: int, like: torch.Tensor, scratch: Scratch):
        self.settings, self.units, self.scratch = settings, units, scratch
        dev, self.dtype = like.device, torch.promote_types(like.dtype, torch.float32)
        self.device, self.input_dtype = dev, like.dtype  # outputs elsewhere need new stats
        self.rows = max(1, min(64, ROW_BUFFER_VALUES // units))
        self.row_mean = torch.empty(self.rows, units, dtype=self.dtype, device=dev)
        self.row_m2 = torch.empty_like(self.row_mean)
        self.row_peak = self.row_mean  # per-batch maxima, where the mean cannot tell firing
        if not settings.fired_from_mean:  # in the output's dtype: amax has no dtype=
            self.row_peak = torch.empty(self.rows, units, dtype=like.dtype, device=dev)
        shape = [1] * like.dim()
        shape[settings.unit_dim] = units
        self.dims = tuple(d for d in range(like.dim()) if d != settings.unit_dim % like.dim())
        self._means = self.row_mean.unbind(0)  # row views made once: no indexing op per batch
        self._means_bcast = [row.view(shape) for row in self._means]
        self._m2s = self.row_m2.unbind(0)
        self._peaks = () if settings.fired_from_mean else self.row_peak.unbind(0)
        self.pending = self.pending_n = 0  # rows written; values per unit in each
        self.fired = torch.zeros(units, dtype=torch.bool, device=dev)
        self.nonfinite = torch.zeros(units, dtype=torch.int64, device=dev)
        self.mean, self.m2 = torch.zeros(2, units, dtype=self.dtype, device=dev).unbind(0)
        self.prev_dead: torch.Tensor | None = None
        self.values = self.samples = 0  # Python ints from shapes: never a device read
        self.var_edges = var_edges(dev)  # made once: no host-to-device copy per window

    def update(self, x: torch.Tensor) -> None:
        """Record one batch (call without grad)."""
        n = x.numel() // self.units
        if self.pending and (n != self.pending_n or self.pending == self.rows):
            self.fold()
        i, dtype = self.pending, None if x.dtype == self.dtype else self.dtype
        torch.mean(x, self.dims, dtype=dtype, out=self._means[i])
        squares = self.scratch.squared_deviations(x, self._means_bcast[i])
        torch.sum(squares, self.dims, out=self._m2s[i])
        if self._peaks:
            torch.amax(x, self.dims, out=self._peaks[i])
        self.pending, self.pending_n = i + 1, n
        self.samples += x.shape[0]

    def fold(self) -> None:
        """Merge the pending rows (k batches of n values per unit each) into the window."""
        k, n = self.pending, self.pending_n
        if k == 0:
            return
        means, m2s = self.row_mean[:k], self.row_m2[:k]
        self.fired.logical_or_((self.row_peak[:k] > self.settings.tau).any(0))
        self.nonfinite.add_(torch.isnan(means - means).sum(0))  # NaN exactly where not finite
        mean = means.mean(0)
        spread = means - mean
        m2 = m2s.sum(0).add_(spread.mul_(spread).sum(0), alpha=n)
        n_b, n_a = k * n, self.values
        if n_a == 0:
            self.mean.copy_(mean)
            self.m2.copy_(m2)
        else:  # Chan et al.: merge (n_b, mean, m2) into (n_a, self.mean, self.m2)
            delta = mean.sub_(self.mean)
            self.mean.add_(delta, alpha=n_b / (n_a + n_b))
            self.m2.add_(m2).addcmul_(delta, delta, value=n_a * n_b / (n_a + n_b))
        self.values += n_b
        self.pending = 0

    def close(self) -> torch.Tensor:
        """The window's `finish` values as one device tensor; the next window starts empty."""
        return self.finish(self.take())

    def take(self) -> WindowState:
        """The closed window's raw per-unit state; the next window starts empty."""
        self.fold()
        state = WindowState(self.fired, self.nonfinite, self.mean, self.m2, self.values)
        self.fired = torch.zeros_like(self.fired)
        self.nonfinite = torch.zeros_like(self.nonfinite)
        self.mean, self.m2 = self.fired.new_zeros((2, self.units), dtype=self.dtype).unbind(0)
        self.values = self.samples = 0
        return state

    def finish(self, state: WindowState) -> torch.Tensor:
        """`KEYS` values, then the `VAR_HIST_BINS` variance counts, of a window state (this
        site's own, or merged over ranks)."""
        dtype = self.var_edges.dtype
        dead, var = ~state.fired, state.m2 / state.values
        undead = dead.new_zeros((), dtype=torch.int64)
        if self.prev_dead is not None and self.prev_dead.device == dead.device:
            undead = (self.prev_dead & state.fired).sum()
        values = [
            dead.sum().to(dtype) / self.units,
            undead.to(dtype),
            var.mean().to(dtype),
            (var < self.settings.low_var_eps).sum().to(dtype) / self.units,
            state.nonfinite.sum().to(dtype),
        ]
        self.prev_dead = dead
        return torch.cat([torch.stack(values), variance_histogram(var, self.var_edges)])


def var_edges(device: torch.device) -> torch.Tensor:
    """The histogram's bin edges 10**e on `device` (float64; float32 where MPS lacks it)."""
    dtype = torch.float32 if device.type == "mps" else torch.float64
    return torch.tensor([10.0**e for e in VAR_HIST_LOG10], dtype=dtype, device=device)


def variance_histogram(var: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Units per bin (schema.py `VAR_HIST_LOG10`), in `edges`' dtype, without a device read.

    `right=True` puts v in bin i when edges[i-1] <= v < edges[i]: 0 below the first edge, the
    last bin from the last edge up. NaN/Inf go to one extra slot that is dropped (scatter_add
    instead of bincount or a boolean mask, whose output sizes would need a device read).
    """
    v = var.to(edges.dtype)
    index = torch.bucketize(v, edges, right=True)
    index = torch.where(torch.isfinite(v), index, VAR_HIST_BINS)
    counts = edges.new_zeros(VAR_HIST_BINS + 1)
    counts.scatter_add_(0, index, torch.ones_like(v))
    return counts[:VAR_HIST_BINS]


@dataclass(frozen=True)
class WindowState:
    """One closed window of one call site: what ranks exchange before `KEYS` are computed."""

    fired: torch.Tensor  # bool [units]: fired on some batch of the window
    nonfinite: torch.Tensor  # int64 [units]: unit-batches with a NaN or ±Inf
    mean: torch.Tensor  # [units]
    m2: torch.Tensor  # [units]: sum of squared deviations from `mean`
    values: int  # values per unit (samples × positions)

    def pack(self) -> torch.Tensor:
        """A float64 CPU vector [values, fired, nonfinite, mean, m2] (one host copy)."""
        head = self.fired.new_full((1,), self.values, dtype=torch.float64)
        parts = (self.fired, self.nonfinite, self.mean, self.m2)
        return torch.cat([head, *(p.to(torch.float64) for p in parts)]).cpu()

    @staticmethod
    def unpack(packed: torch.Tensor, device: torch.device) -> WindowState:
        """Inverse of `pack`, on `device`."""
        units = (packed.numel() - 1) // 4
        fired, nonfinite, mean, m2 = packed[1:].to(device).view(4, units).unbind(0)
        return WindowState(fired > 0, nonfinite.round().long(), mean, m2, int(packed[0]))


def merge_states(states: list[WindowState]) -> WindowState:
    """One window from windows of the same units seen by different ranks (Chan's merge, in
    order: a unit stuck at one value on every rank keeps a variance of exactly 0)."""
    merged = states[0]
    for other in states[1:]:
        n_a, n_b = merged.values, other.values
        n = n_a + n_b
        delta = other.mean - merged.mean
        mean = merged.mean + delta * (n_b / n)
        m2 = merged.m2 + other.m2 + delta * delta * (n_a * n_b / n)
        merged = WindowState(
            merged.fired | other.fired, merged.nonfinite + other.nonfinite, mean, m2, n
        )
    return merged
