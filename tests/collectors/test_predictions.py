"""The prediction recorder: schedule, bounds, exact float32 rows, and never raising."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainlight.collectors.problems import Problems
from trainlight.collectors.signals.predictions import (
    LABELS_KEY,
    PREDICTIONS_KEY,
    PredictionRecorder,
)


def test_every_kth_step_is_kept_as_one_arrays_row_with_exact_values() -> None:
    recorder = PredictionRecorder(Problems(), every=5)
    probs = torch.softmax(torch.randn(7, 3, dtype=torch.float64), dim=1)
    for step in range(12):
        recorder.observe(step, probs * (step + 1))
    rows = recorder.collect()
    assert rows is not None
    assert rows["step"] == [0, 5, 10]
    assert rows["table"] == ["arrays"] * 3 and rows["key"] == [PREDICTIONS_KEY] * 3
    assert rows["n_rows"] == [7] * 3 and rows["n_cols"] == [3] * 3
    expected = (probs * 6).to(torch.float32).reshape(-1).numpy()
    np.testing.assert_array_equal(rows["values"][1], expected)
    assert recorder.collect() is None  # handed over once


def test_a_later_inplace_change_does_not_alter_the_record() -> None:
    recorder = PredictionRecorder(Problems(), every=1)
    probs = torch.full((4,), 0.25)
    recorder.observe(0, probs)
    probs.fill_(0.9)
    rows = recorder.collect()
    assert rows is not None and rows["n_cols"] == [1]
    assert rows["values"][0].tolist() == [0.25] * 4


def test_more_than_the_bound_keeps_the_first_examples_and_says_so_once() -> None:
    problems = Problems()
    recorder = PredictionRecorder(problems, every=1, max_examples=10)
    for step in range(3):
        recorder.observe(step, torch.rand(25, 2))
    rows = recorder.collect()
    assert rows is not None and rows["n_rows"] == [10, 10, 10]
    assert problems.count("predictions_truncated") == 3


@pytest.mark.parametrize(
    "bad", [torch.tensor(0.5), torch.rand(2, 3, 4), torch.rand(0, 3), [0.1, 0.9]]
)
def test_bad_input_is_skipped_and_counted_never_raised(bad: object) -> None:
    problems = Problems()
    recorder = PredictionRecorder(problems, every=1)
    recorder.observe(0, bad)  # type: ignore[arg-type]
    assert recorder.collect() is None
    assert problems.count("predictions_skipped") == 1


def test_bad_settings_are_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="every"):
        PredictionRecorder(Problems(), every=0)
    with pytest.raises(ValueError, match="max_examples"):
        PredictionRecorder(Problems(), max_examples=5000)


def test_labels_are_kept_once_as_one_column_beside_the_first_record() -> None:
    recorder = PredictionRecorder(Problems(), every=5, max_examples=4)
    labels = torch.tensor([2, 0, 1, 1, 2, 0])
    for step in range(11):
        recorder.observe(step, torch.rand(6, 3), labels=labels)
    rows = recorder.collect()
    assert rows is not None
    kept = [(s, k) for s, k in zip(rows["step"], rows["key"], strict=True)]
    probs_at = [(step, PREDICTIONS_KEY) for step in (5, 10)]
    assert kept == [(0, PREDICTIONS_KEY), (0, LABELS_KEY), *probs_at]
    assert rows["n_rows"][1] == 4 and rows["n_cols"][1] == 1  # truncated like the probabilities
    assert rows["values"][1].tolist() == [2.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "bad", [torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0, 1]), [0, 1, 2], torch.zeros(3, 1)]
)
def test_bad_labels_are_skipped_and_counted_the_probabilities_kept(bad: object) -> None:
    problems = Problems()
    recorder = PredictionRecorder(problems, every=1)
    recorder.observe(0, torch.rand(3, 2), labels=bad)
    rows = recorder.collect()
    assert rows is not None and rows["key"] == [PREDICTIONS_KEY]
    assert problems.count("labels_skipped") == 1
