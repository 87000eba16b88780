"""Prediction difference (PD) between two replicas: how differently they predict the same examples.

Replicas (same configuration and initialisation, different data order) that reach the same
accuracy can still disagree on many individual examples; that irreproducibility is invisible in
loss curves. The source (Shamir et al., "Smooth activations and reproducibility in deep networks";
"Anti-distillation") defines the relative PD for one probability per example,

    relative PD = mean over examples of  |p1 - p2| / ((p1 + p2) / 2),

and for several classes reports the figures below, which are what this module computes:

- absolute PD: mean over examples of ½ Σ_c |p1_c − p2_c| (total variation, in [0, 1]);
- relative PD on one probability per example: the true label's when labels are known, otherwise
  the top class of the two replicas' average prediction (a single column: that column, the
  textbook binary case). Both probabilities below 1e-7 count 0 (the ratio would be noise).
  Averaging the ratio over every class instead, as trainlight once did, lets classes predicted at
  1e-13..1e-3 dominate: healthy replicas then score 0.55-0.85;
- top-1 disagreement: the share of examples whose most likely class differs (binary: which side
  of 0.5).

Each comes with a bootstrap band over examples (200 resamples, 5th-95th percentile, fixed seed),
since a probe set of a few hundred examples is a sample. NaN predictions give NaN figures.

numpy only: the dashboard computes these from stored probabilities without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FLOOR = 1e-7
BOOTSTRAP_DRAWS = 200
BAND_PERCENTILES = (5.0, 95.0)

Probabilities = npt.NDArray[np.floating]
Floats = npt.NDArray[np.float64]
Labels = npt.NDArray[np.integer]


@dataclass(frozen=True)
class Band:
    """A mean over examples and its bootstrap band (5th-95th percentile of resampled means)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class PairDifference:
    """The three PD figures of two replicas at one step. `on_labels`: relative PD on the true
    labels (False: on the top class of the average prediction, or the single column)."""

    absolute: Band
    relative: Band
    disagreement: Band
    examples: int
    on_labels: bool


def per_example_absolute(p1: Probabilities, p2: Probabilities) -> Floats:
    """½ Σ_c |p1_c − p2_c| per example; a single column p stands for the two classes (1−p, p)."""
    a, b = _pair(p1, p2)
    if a.shape[1] == 1:
        return np.abs(a[:, 0] - b[:, 0])
    return 0.5 * np.abs(a - b).sum(axis=1)


def per_example_relative(
    p1: Probabilities, p2: Probabilities, labels: Labels | None = None
) -> Floats:
    """|p1 − p2| / ((p1 + p2) / 2) per example on one probability each: the label's, the top
    class of the average prediction without labels, or the single column."""
    a, b = _pair(p1, p2)
    if a.shape[1] == 1:
        x, y = a[:, 0], b[:, 0]
    else:
        picked = reference_classes(a, b, labels)
        rows = np.arange(len(a))
        x, y = a[rows, picked], b[rows, picked]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(x - y) / ((x + y) / 2.0)
    return np.where((x < FLOOR) & (y < FLOOR), 0.0, ratio)


def per_example_disagreement(p1: Probabilities, p2: Probabilities) -> Floats:
    """1 where the most likely class differs (binary: the side of 0.5), else 0; NaN rows NaN."""
    a, b = _pair(p1, p2)
    if a.shape[1] == 1:
        differs = (a[:, 0] >= 0.5) != (b[:, 0] >= 0.5)
    else:
        differs = a.argmax(axis=1) != b.argmax(axis=1)
    nan = np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)
    return np.where(nan, np.nan, differs.astype(np.float64))


def reference_classes(a: Floats, b: Floats, labels: Labels | None) -> npt.NDArray[np.intp]:
    """The class whose probability the relative PD compares, per example."""
    if labels is not None:
        return np.asarray(labels, dtype=np.intp)
    return np.asarray(np.nan_to_num((a + b) / 2.0, nan=-1.0).argmax(axis=1), dtype=np.intp)


def usable_labels(labels: npt.ArrayLike | None, shape: tuple[int, ...]) -> Labels | None:
    """`labels` as class indices when they fit predictions of `shape` (one integer label in
    0..classes-1 per example, several classes), else None (the top class is used instead)."""
    if labels is None or len(shape) != 2 or shape[1] < 2:
        return None
    array = np.asarray(labels, dtype=np.float64).reshape(-1)
    whole = np.isfinite(array).all() and bool((array == np.round(array)).all())
    if len(array) != shape[0] or not whole or array.min() < 0 or array.max() >= shape[1]:
        return None
    return array.astype(np.intp)


def relative_pd(p1: Probabilities, p2: Probabilities, labels: Labels | None = None) -> float:
    """The relative PD alone, without a band (e.g. a run against its own earlier predictions)."""
    return float(per_example_relative(p1, p2, labels).mean())


def pair_difference(
    p1: Probabilities, p2: Probabilities, labels: Labels | None = None, seed: int = 0
) -> PairDifference:
    """The three figures with bootstrap bands; one set of resamples serves all three."""
    figures = [
        per_example_absolute(p1, p2),
        per_example_relative(p1, p2, labels),
        per_example_disagreement(p1, p2),
    ]
    n = len(figures[0])
    draws = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_DRAWS, n))
    absolute, relative, disagreement = (_band(values, draws) for values in figures)
    return PairDifference(absolute, relative, disagreement, n, labels is not None)


def _band(values: Floats, draws: npt.NDArray[np.intp]) -> Band:
    low, high = np.percentile(values[draws].mean(axis=1), BAND_PERCENTILES)
    return Band(float(values.mean()), float(low), float(high))


def _pair(p1: Probabilities, p2: Probabilities) -> tuple[Floats, Floats]:
    a, b = _as_matrix(p1), _as_matrix(p2)
    if a.shape != b.shape:
        raise ValueError(f"probabilities of different shapes: {a.shape} vs {b.shape}")
    return a, b


def _as_matrix(p: Probabilities) -> Floats:
    array = np.asarray(p, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(
            f"probabilities must be [examples] or [examples, classes], got {array.shape}"
        )
    return array
