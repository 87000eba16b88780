"""Two-sample Kolmogorov-Smirnov distance against a summarised reference (numpy only, torch-free).

The `runaway` signal compares the generator's recent per-sample means with the real data's. The
real data is seen once (`mon.reference(batch)`), so it is kept as a small summary, not as the
whole sample: a CDF that is piecewise linear between knots (`ReferenceCDF`). Summarised by
evenly spaced quantiles, the reference CDF is off from the sample's own empirical CDF by at most
1/(quantiles - 1) + 2/m, and so is the distance. A sample no larger than the summary is stored
whole, as its exact empirical CDF (a jump is two knots at one value), so the distance is then the
textbook two-sample KS statistic exactly.

`ks_statistic` is exact for the CDF it is given: between consecutive knots and sample points both
CDFs are monotone and one is constant, so the supremum is at one of those points (or its left
limit), and all of them are evaluated. NaN has no place in an order: a sample holding one has a
NaN distance (NaN is data, and a NaN output is a fault to show, not to hide). ±Inf are ordinary
extreme values. The module imports no torch so the dashboard can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# The effect size divides by the reference IQR; a constant reference (IQR 0) would divide by
# zero. The IQR is floored at a millionth of the reference median's magnitude (above float32
# rounding, so rounding noise around a constant reference does not read as a huge effect) and at
# 1e-12 (a constant reference at 0).
IQR_REL_FLOOR = 1e-6
IQR_ABS_FLOOR = 1e-12

# The two distributions behind the distance, stored as `metrics` rows so the dashboard can draw
# them without a table of their own: at one step, the rows of one of these keys, sorted by value,
# are quantiles at evenly spaced probabilities 0, 1/(n-1), ..., 1 (the order of the rows is not
# kept; the order of the values is). The reference is written once per `mon.reference()` call,
# the generated means every few distance readings (see signals/runaway.py).
REFERENCE_QUANTILES_KEY = "runaway/ref_q"
GENERATED_QUANTILES_KEY = "runaway/gen_q"
QUANTILE_KEYS = (REFERENCE_QUANTILES_KEY, GENERATED_QUANTILES_KEY)


@dataclass(frozen=True, eq=False)
class ReferenceCDF:
    """A reference distribution: CDF linear between knots, right-continuous at repeated knots.

    Attributes:
        values: knot positions, nondecreasing and finite.
        probs: the CDF at each knot, nondecreasing from 0 to 1 (a repeated value is a jump).
        count: m, the size of the sample summarised (it sets the KS critical value).
        median, iqr: of the sample (exact when built from it, interpolated from quantiles).
    """

    values: FloatArray
    probs: FloatArray
    count: int
    median: float
    iqr: float

    def __post_init__(self) -> None:
        v, p = self.values, self.probs
        if v.ndim != 1 or v.shape != p.shape or v.size < 2:
            raise ValueError(f"need >= 2 knots with one prob each, got {v.shape} and {p.shape}")
        if not np.all(np.isfinite(v)) or np.any(np.diff(v) < 0):
            raise ValueError("reference knot values must be finite and nondecreasing")
        if p[0] != 0.0 or p[-1] != 1.0 or np.any(np.diff(p) < 0):
            raise ValueError("reference knot probs must rise from 0 to 1")
        if self.count < 1:
            raise ValueError(f"reference count must be >= 1, got {self.count}")
        v.setflags(write=False)
        p.setflags(write=False)

    @classmethod
    def from_sample(cls, sample: npt.ArrayLike, quantiles: int = 257) -> ReferenceCDF:
        """Summarise a finite sample by `quantiles` evenly spaced quantiles (exact if small)."""
        x = _finite_sample(sample)
        if quantiles < 2:
            raise ValueError(f"quantiles must be >= 2, got {quantiles}")
        if x.size <= quantiles:
            return cls.exact(x)
        q25, median, q75 = np.quantile(x, [0.25, 0.5, 0.75])
        values = np.quantile(x, np.linspace(0.0, 1.0, quantiles))
        probs = np.linspace(0.0, 1.0, quantiles)
        return cls(values, probs, int(x.size), float(median), float(q75 - q25))

    @classmethod
    def exact(cls, sample: npt.ArrayLike) -> ReferenceCDF:
        """The sample's own empirical CDF: knots (x_k, k/m), (x_k, (k+1)/m) per sorted x_k."""
        x = np.sort(_finite_sample(sample))
        m = x.size
        values = np.repeat(x, 2)
        probs = ((np.arange(2 * m) + 1) // 2) / m
        q25, median, q75 = np.quantile(x, [0.25, 0.5, 0.75])
        return cls(values, probs, int(m), float(median), float(q75 - q25))

    @classmethod
    def from_quantiles(cls, quantiles: npt.ArrayLike, count: int) -> ReferenceCDF:
        """A reference stored as quantiles at evenly spaced probabilities 0..1 (e.g. re-read)."""
        values = np.asarray(quantiles, dtype=np.float64).copy()
        probs = np.linspace(0.0, 1.0, values.size)
        q25, median, q75 = np.interp([0.25, 0.5, 0.75], probs, values)
        return cls(values, probs, int(count), float(median), float(q75 - q25))

    def cdf(self, x: FloatArray) -> FloatArray:
        """P(X <= x)."""
        last_at_or_below = np.searchsorted(self.values, x, side="right") - 1
        return self._interpolate(x, last_at_or_below)

    def cdf_left(self, x: FloatArray) -> FloatArray:
        """P(X < x): the left limit, which differs from `cdf` at a jump."""
        last_below = np.searchsorted(self.values, x, side="left") - 1
        return self._interpolate(x, last_below)

    def _interpolate(self, x: FloatArray, lo: npt.NDArray[np.intp]) -> FloatArray:
        """CDF on the segment from knot `lo` to `lo + 1` (0 before the first, 1 after the last)."""
        v, p = self.values, self.probs
        inner = (lo >= 0) & (lo < v.size - 1)
        lo_c = np.clip(lo, 0, v.size - 2)
        width = np.where(inner, v[lo_c + 1] - v[lo_c], 1.0)  # > 0 wherever inner
        with np.errstate(invalid="ignore"):  # ±Inf x: computed, then discarded by `inner`
            frac = np.where(inner, (x - v[lo_c]) / width, 0.0)
            inside = p[lo_c] + (p[lo_c + 1] - p[lo_c]) * frac
        return np.where(inner, inside, np.where(lo < 0, 0.0, 1.0))


def ks_statistic(sample: npt.ArrayLike, reference: ReferenceCDF) -> float:
    """sup_x |G_n(x) - F(x)|, G_n the sample's empirical CDF; NaN for an empty or NaN sample."""
    x = np.sort(np.asarray(sample, dtype=np.float64).ravel())
    n = x.size
    if n == 0 or np.isnan(x[-1]):  # NaN sorts last
        return math.nan
    points = np.concatenate([x, reference.values])
    right = np.abs(np.searchsorted(x, points, side="right") / n - reference.cdf(points))
    left = np.abs(np.searchsorted(x, points, side="left") / n - reference.cdf_left(points))
    return float(max(right.max(), left.max()))


def c_alpha(alpha: float) -> float:
    """The asymptotic KS coefficient sqrt(-ln(alpha / 2) / 2); c(0.01) = 1.628."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return math.sqrt(-math.log(alpha / 2.0) / 2.0)


def ks_critical(n: int, m: int, alpha: float = 0.01) -> float:
    """Two-sample KS critical value c(alpha)·sqrt((n + m) / (n·m)); NaN when a sample is empty."""
    if n < 1 or m < 1:
        return math.nan
    return c_alpha(alpha) * math.sqrt((n + m) / (n * m))


def effect_size(sample: npt.ArrayLike, reference: ReferenceCDF) -> float:
    """|median(sample) - median(ref)| / IQR(ref), IQR floored (see IQR_*_FLOOR); NaN propagates."""
    x = np.asarray(sample, dtype=np.float64).ravel()
    if x.size == 0:
        return math.nan
    return abs(float(np.median(x)) - reference.median) / iqr_floor(reference)


def summary_quantiles(sample: npt.ArrayLike, count: int) -> FloatArray:
    """The finite values' quantiles at `count` evenly spaced probabilities 0..1, ascending.

    A sample no larger than `count` is returned whole (sorted): its own quantiles, exactly.
    Empty when no value is finite (NaN has no rank; ±Inf would make interpolation NaN).
    """
    if count < 2:
        raise ValueError(f"count must be >= 2, got {count}")
    x = np.asarray(sample, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size <= count:
        return np.sort(x)
    return np.quantile(x, np.linspace(0.0, 1.0, count))


def iqr_floor(reference: ReferenceCDF) -> float:
    """The reference IQR, floored so a constant reference gives a large but finite effect."""
    return max(reference.iqr, IQR_REL_FLOOR * abs(reference.median), IQR_ABS_FLOOR)


def _finite_sample(sample: npt.ArrayLike) -> FloatArray:
    x = np.asarray(sample, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("the reference sample is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("the reference sample has NaN or Inf values; drop them first")
    return x
