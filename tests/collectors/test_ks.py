"""KS distance, critical value and effect size against naive plain-Python references."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from trainlight.collectors.health.ks import (
    ReferenceCDF,
    c_alpha,
    effect_size,
    ks_critical,
    ks_statistic,
    summary_quantiles,
)


def naive_ks(a: list[float], b: list[float]) -> float:
    """Textbook two-sample KS: sort both, walk every point, track |F_a - F_b| after each value."""
    a, b = sorted(a), sorted(b)
    i = j = 0
    d = 0.0
    while i < len(a) or j < len(b):
        z = min(a[i] if i < len(a) else math.inf, b[j] if j < len(b) else math.inf)
        while i < len(a) and a[i] == z:
            i += 1
        while j < len(b) and b[j] == z:
            j += 1
        d = max(d, abs(i / len(a) - j / len(b)))
    return d


SAMPLES = {
    "same": lambda rng: rng.normal(size=512),
    "shift_0.1": lambda rng: rng.normal(0.1, size=512),
    "shift_1": lambda rng: rng.normal(1.0, size=512),
    "wider": lambda rng: rng.normal(0, 2.0, size=512),
    "heavy_tails": lambda rng: rng.standard_t(2, size=512),
    "far_away": lambda rng: rng.normal(10.0, size=512),
    "small": lambda rng: rng.normal(0.3, size=7),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_quantile_summary_matches_the_naive_statistic_within_its_resolution(name: str) -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    sample = SAMPLES[name](rng)
    summary = ReferenceCDF.from_sample(reference, quantiles=257)
    assert summary.values.size == 257 and summary.count == 5000
    # The interpolated CDF is within 1/(quantiles-1) + 2/m of the empirical one everywhere.
    tolerance = 1 / 256 + 2 / 5000
    got = ks_statistic(sample, summary)
    assert got == pytest.approx(naive_ks(list(sample), list(reference)), abs=tolerance)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_reference_given_as_its_whole_sample_is_exact(name: str) -> None:
    rng = np.random.default_rng(1)
    reference = np.sort(rng.normal(size=300))
    sample = SAMPLES[name](rng)
    want = naive_ks(list(sample), list(reference))
    assert ks_statistic(sample, ReferenceCDF.exact(reference)) == want  # same k/m, i/n floats
    # a sample no larger than the summary is kept whole, so `from_sample` is exact too
    small = ReferenceCDF.from_sample(reference, quantiles=300)
    assert ks_statistic(sample, small) == want


def test_ties_within_and_between_samples_are_exact() -> None:
    reference = [0.0, 1.0, 1.0, 1.0, 2.0, 3.0, 3.0]
    for sample in ([1.0, 1.0, 3.0], [1.0], [0.0, 0.0, 0.0, 5.0], [2.0, 2.5, 1.0, 1.0]):
        want = naive_ks(sample, reference)
        assert ks_statistic(sample, ReferenceCDF.exact(reference)) == want


def test_infinities_are_extreme_values_and_nan_makes_the_distance_nan() -> None:
    reference = list(np.random.default_rng(2).normal(size=200))
    summary = ReferenceCDF.exact(reference)
    with_inf = [math.inf, -math.inf, 0.0, 0.5, math.inf]
    assert ks_statistic(with_inf, summary) == pytest.approx(naive_ks(with_inf, reference))
    assert math.isnan(ks_statistic([0.0, math.nan, 1.0], summary))
    assert math.isnan(ks_statistic([], summary))
    assert math.isnan(effect_size([0.0, math.nan], summary))
    assert effect_size([math.inf, math.inf, 0.0], summary) == math.inf


def test_critical_value_formula() -> None:
    assert c_alpha(0.01) == pytest.approx(1.628, abs=5e-4)
    assert c_alpha(0.05) == pytest.approx(1.358, abs=5e-4)
    n, m = 512, 2048
    assert ks_critical(n, m) == pytest.approx(c_alpha(0.01) * math.sqrt((n + m) / (n * m)))
    assert ks_critical(n, m, alpha=0.05) < ks_critical(n, m)
    assert math.isnan(ks_critical(0, m))
    with pytest.raises(ValueError, match="alpha"):
        c_alpha(1.5)


def test_critical_value_rejects_about_alpha_of_same_distribution_samples() -> None:
    rng = np.random.default_rng(3)
    n = m = 200
    trials = 2000
    critical = ks_critical(n, m)
    rejected = 0
    for _ in range(trials):
        summary = ReferenceCDF.exact(rng.normal(size=m))
        rejected += ks_statistic(rng.normal(size=n), summary) > critical
    # the asymptotic value is slightly conservative at this size; alpha = 1%
    assert rejected / trials < 0.02


def test_effect_size_is_median_shift_over_reference_iqr() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=5000)
    sample = rng.normal(0.7, size=512)
    q25, q75 = np.quantile(reference, [0.25, 0.75])
    want = abs(statistics.median(sample) - statistics.median(reference)) / (q75 - q25)
    for summary in (ReferenceCDF.from_sample(reference), ReferenceCDF.exact(reference)):
        assert effect_size(sample, summary) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(0.7 / 1.349, abs=0.1)  # normal: IQR = 1.349 std


def test_constant_reference_floors_the_iqr() -> None:
    summary = ReferenceCDF.exact([0.5] * 10)
    assert summary.iqr == 0.0
    assert effect_size([0.5, 0.5], summary) == 0.0
    # floor = 1e-6 * |median|: a float32 rounding step away reads as small, a real shift as huge
    assert effect_size([0.5 + 3e-8], summary) < 0.1
    assert effect_size([0.6], summary) == pytest.approx(0.1 / (1e-6 * 0.5))
    at_zero = ReferenceCDF.exact([0.0] * 10)
    assert effect_size([1e-3], at_zero) == pytest.approx(1e-3 / 1e-12)


def test_from_quantiles_rebuilds_the_summary() -> None:
    reference = np.random.default_rng(5).normal(size=5000)
    summary = ReferenceCDF.from_sample(reference, quantiles=257)
    again = ReferenceCDF.from_quantiles(summary.values, summary.count)
    assert again.median == pytest.approx(summary.median)  # 0.5 is a knot of 257 quantiles
    assert again.iqr == pytest.approx(summary.iqr)
    points = np.linspace(-4, 4, 101)
    np.testing.assert_allclose(again.cdf(points), summary.cdf(points))


def test_bad_references_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="NaN or Inf"):
        ReferenceCDF.from_sample([0.0, math.nan])
    with pytest.raises(ValueError, match="empty"):
        ReferenceCDF.from_sample([])
    with pytest.raises(ValueError, match="quantiles"):
        ReferenceCDF.from_sample([0.0, 1.0, 2.0], quantiles=1)
    with pytest.raises(ValueError, match="nondecreasing"):
        ReferenceCDF.from_quantiles([1.0, 0.0], count=2)


def test_summary_quantiles_of_the_finite_values() -> None:
    sample = np.random.default_rng(11).standard_normal(1000)
    np.testing.assert_allclose(
        summary_quantiles(sample, 33), np.quantile(sample, np.linspace(0, 1, 33)), rtol=1e-12
    )
    small = [3.0, math.nan, 1.0, math.inf, 2.0]  # no larger than the summary: kept whole
    assert summary_quantiles(small, 33).tolist() == [1.0, 2.0, 3.0]
    assert summary_quantiles([math.nan], 33).size == 0
    with pytest.raises(ValueError, match="count"):
        summary_quantiles(sample, 1)
