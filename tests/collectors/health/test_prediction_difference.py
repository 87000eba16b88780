"""The three PD figures against naive per-example loops, the bands against a naive bootstrap,
the label handling, and the source's binary formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainlight.collectors.health.prediction_difference import (
    BOOTSTRAP_DRAWS,
    FLOOR,
    pair_difference,
    per_example_absolute,
    per_example_disagreement,
    per_example_relative,
    relative_pd,
    usable_labels,
)


def softmax_rows(n: int, c: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(n, c)) * 3
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def naive_figures(
    p1: list[list[float]], p2: list[list[float]], labels: list[int] | None
) -> tuple[list[float], list[float], list[float]]:
    """Per example: ½ Σ|p1−p2|, the relative PD on the label (or the average's top class), and
    whether the top classes differ, by plain loops."""
    absolute, relative, disagree = [], [], []
    for i, (row1, row2) in enumerate(zip(p1, p2, strict=True)):
        absolute.append(sum(abs(a - b) for a, b in zip(row1, row2, strict=True)) / 2)
        mean = [(a + b) / 2 for a, b in zip(row1, row2, strict=True)]
        c = labels[i] if labels is not None else mean.index(max(mean))
        a, b = row1[c], row2[c]
        relative.append(0.0 if a < FLOOR and b < FLOOR else abs(a - b) / ((a + b) / 2))
        disagree.append(float(row1.index(max(row1)) != row2.index(max(row2))))
    return absolute, relative, disagree


@pytest.mark.parametrize("with_labels", [True, False])
def test_figures_match_naive_loops_on_random_softmax_outputs(with_labels: bool) -> None:
    p1, p2 = softmax_rows(60, 10, 1), softmax_rows(60, 10, 2)
    labels = np.random.default_rng(3).integers(0, 10, 60)
    p1[0, labels[0]], p2[0, labels[0]] = 1e-9, 3e-8  # both tiny on the label: counts 0
    given = labels if with_labels else None
    absolute, relative, disagree = naive_figures(
        p1.tolist(), p2.tolist(), labels.tolist() if with_labels else None
    )
    np.testing.assert_allclose(per_example_absolute(p1, p2), absolute)
    np.testing.assert_allclose(per_example_relative(p1, p2, given), relative)
    np.testing.assert_allclose(per_example_disagreement(p1, p2), disagree)
    found = pair_difference(p1, p2, given)
    assert found.absolute.value == pytest.approx(np.mean(absolute))
    assert found.relative.value == pytest.approx(np.mean(relative))
    assert relative_pd(p1, p2, given) == pytest.approx(np.mean(relative))
    assert found.disagreement.value == pytest.approx(np.mean(disagree))
    assert found.on_labels is with_labels and found.examples == 60


def test_bands_are_the_5th_and_95th_percentile_of_a_naive_bootstrap() -> None:
    p1, p2 = softmax_rows(80, 4, 4), softmax_rows(80, 4, 5)
    found = pair_difference(p1, p2, seed=7)
    draws = np.random.default_rng(7).integers(0, 80, size=(BOOTSTRAP_DRAWS, 80))
    per_example = per_example_absolute(p1, p2)
    means = [float(np.mean([per_example[i] for i in row])) for row in draws]
    assert found.absolute.low == pytest.approx(np.percentile(means, 5))
    assert found.absolute.high == pytest.approx(np.percentile(means, 95))
    for band in (found.absolute, found.relative, found.disagreement):
        assert band.low <= band.value <= band.high
    assert pair_difference(p1, p2, seed=7) == found  # a fixed seed: the same band every time


def test_rare_classes_no_longer_dominate_the_relative_pd() -> None:
    """A copy with tiny noise on the logits: classes near 1e-10 change by large factors, the
    label's probability (near 1) hardly; the class-averaged ratio would be large."""
    logits = np.random.default_rng(0).normal(size=(200, 10)) * 12
    noisy = logits + np.random.default_rng(1).normal(size=logits.shape) * 0.3
    p1, p2 = (np.exp(x) / np.exp(x).sum(axis=1, keepdims=True) for x in (logits, noisy))
    labels = p1.argmax(axis=1)
    class_mean = np.mean(np.abs(p1 - p2) / ((p1 + p2) / 2))
    found = pair_difference(p1, p2, labels)
    assert class_mean > 0.2
    assert found.relative.value < 0.1 and found.disagreement.value < 0.05


def test_identical_replicas_score_zero_everywhere() -> None:
    p = softmax_rows(20, 4, 3)
    found = pair_difference(p, p.copy())
    for band in (found.absolute, found.relative, found.disagreement):
        assert band.value == band.low == band.high == 0.0


def test_one_column_is_the_sources_binary_formula() -> None:
    p1, p2 = np.array([0.2, 0.6, 0.9]), np.array([0.4, 0.4, 0.9])
    found = pair_difference(p1, p2)
    assert found.relative.value == pytest.approx((0.2 / 0.3 + 0.2 / 0.5 + 0.0) / 3)
    assert found.absolute.value == pytest.approx((0.2 + 0.2 + 0.0) / 3)
    assert found.disagreement.value == pytest.approx(1 / 3)


def test_labels_are_used_only_when_they_fit() -> None:
    assert usable_labels([0, 2, 1], (3, 3)) is not None
    assert usable_labels(np.array([0.0, 2.0, 1.0], np.float32), (3, 3)).tolist() == [0, 2, 1]
    for bad in ([0, 3, 1], [0, 1], [0, -1, 1], [0.5, 1, 1], [0, math.nan, 1]):
        assert usable_labels(bad, (3, 3)) is None
    assert usable_labels([0, 1, 1], (3, 1)) is None  # one column: the column itself is compared
    assert usable_labels(None, (3, 3)) is None


def test_nan_predictions_give_nan_figures_not_numbers_that_look_fine() -> None:
    p1, p2 = softmax_rows(5, 3, 6), softmax_rows(5, 3, 7)
    p1[2, :] = math.nan
    found = pair_difference(p1, p2)
    assert math.isnan(found.absolute.value) and math.isnan(found.relative.value)
    assert math.isnan(found.disagreement.value)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shapes"):
        pair_difference(np.ones((3, 2)) / 2, np.ones((4, 2)) / 2)
