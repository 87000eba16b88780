"""PD against a naive per-element loop, disagreement by hand, and the bootstrap band's shape."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainlight.collectors.health.prediction_difference import (
    FLOOR,
    pair_difference,
    per_example_pd,
    top1_disagreement,
)


def naive_pd(p1: list[list[float]], p2: list[list[float]]) -> float:
    total = 0.0
    for row1, row2 in zip(p1, p2, strict=True):
        per_class = []
        for a, b in zip(row1, row2, strict=True):
            per_class.append(0.0 if a < FLOOR and b < FLOOR else abs(a - b) / ((a + b) / 2))
        total += sum(per_class) / len(per_class)
    return total / len(p1)


def softmax_rows(n: int, c: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(n, c)) * 3
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_pd_matches_a_naive_loop_on_random_softmax_outputs() -> None:
    p1, p2 = softmax_rows(50, 10, 1), softmax_rows(50, 10, 2)
    p1[0, :3] = [1e-9, 2e-8, 0.0]  # both tiny on some classes count 0
    p2[0, :3] = [5e-8, 1e-10, 0.0]
    assert per_example_pd(p1, p2).mean() == pytest.approx(naive_pd(p1.tolist(), p2.tolist()))


def test_identical_replicas_have_zero_pd_and_zero_disagreement() -> None:
    p = softmax_rows(20, 4, 3)
    result = pair_difference(p, p.copy())
    assert result.pd == 0.0 and result.pd_low == 0.0 and result.pd_high == 0.0
    assert result.disagreement == 0.0 and result.examples == 20


def test_binary_probabilities_use_the_textbook_formula_and_the_half_threshold() -> None:
    p1, p2 = np.array([0.2, 0.6, 0.9]), np.array([0.4, 0.4, 0.9])
    expected = (0.2 / 0.3 + 0.2 / 0.5 + 0.0) / 3
    assert per_example_pd(p1, p2).mean() == pytest.approx(expected)
    assert top1_disagreement(p1, p2) == pytest.approx(1 / 3)


def test_top1_disagreement_counts_argmax_changes() -> None:
    p1 = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
    p2 = np.array([[0.6, 0.4], [0.6, 0.4], [0.5, 0.5]])
    assert top1_disagreement(p1, p2) == pytest.approx(1 / 3)


def test_bootstrap_band_brackets_pd_and_narrows_with_more_examples() -> None:
    small = pair_difference(softmax_rows(40, 5, 4), softmax_rows(40, 5, 5))
    large = pair_difference(softmax_rows(4000, 5, 4), softmax_rows(4000, 5, 5))
    for r in (small, large):
        assert r.pd_low <= r.pd <= r.pd_high
    assert large.pd_high - large.pd_low < small.pd_high - small.pd_low


def test_nan_predictions_give_a_nan_pd_not_a_number_that_looks_fine() -> None:
    p1, p2 = softmax_rows(5, 3, 6), softmax_rows(5, 3, 7)
    p1[2, 1] = math.nan
    assert math.isnan(pair_difference(p1, p2).pd)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shapes"):
        per_example_pd(np.ones((3, 2)) / 2, np.ones((4, 2)) / 2)
