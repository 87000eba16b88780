"""Prediction difference (PD) between two replicas: how differently they predict the same examples.

Replicas (same configuration, different seed) that reach the same accuracy can still disagree on
many individual examples; that irreproducibility is invisible in loss curves. Following the
reproducibility literature (Shamir et al., "Smooth activations and reproducibility in deep
networks"), the relative PD compares the predicted probabilities of a fixed probe set:

    PD = mean over examples m of  mean over classes c of  |p1 - p2| / ((p1 + p2) / 2)

where a (m, c) pair with both probabilities below 1e-7 counts 0 (both models agree it is
impossible; the ratio would be noise). For one probability per example (binary) the class mean is
over that one column, the textbook formula. PD lies in [0, 2]. Beside it, the top-1 disagreement
rate, and a bootstrap band over examples, since a probe set of a few thousand examples is a sample.

numpy only: the dashboard computes these from stored probabilities without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FLOOR = 1e-7
BOOTSTRAP_DRAWS = 200

Probabilities = npt.NDArray[np.floating]


@dataclass(frozen=True)
class PairDifference:
    """PD and top-1 disagreement of two replicas at one step, with a bootstrap band on PD."""

    pd: float
    pd_low: float
    pd_high: float
    disagreement: float
    examples: int


def per_example_pd(p1: Probabilities, p2: Probabilities) -> npt.NDArray[np.float64]:
    """Relative PD of each example (class mean); NaN where either model predicted NaN."""
    a, b = _as_matrix(p1), _as_matrix(p2)
    if a.shape != b.shape:
        raise ValueError(f"probabilities of different shapes: {a.shape} vs {b.shape}")
    mean = (a + b) / 2.0
    both_tiny = (a < FLOOR) & (b < FLOOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(both_tiny, 0.0, np.abs(a - b) / mean)
    return np.asarray(ratio.mean(axis=1), dtype=np.float64)


def top1_disagreement(p1: Probabilities, p2: Probabilities) -> float:
    """Fraction of examples whose most likely class differs (binary: on which side of 0.5)."""
    a, b = _as_matrix(p1), _as_matrix(p2)
    if a.shape[1] == 1:
        return float(np.mean((a[:, 0] >= 0.5) != (b[:, 0] >= 0.5)))
    return float(np.mean(a.argmax(axis=1) != b.argmax(axis=1)))


def pair_difference(
    p1: Probabilities, p2: Probabilities, level: float = 0.95, seed: int = 0
) -> PairDifference:
    """PD with a percentile bootstrap band (resampling examples), and top-1 disagreement."""
    pds = per_example_pd(p1, p2)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(pds), size=(BOOTSTRAP_DRAWS, len(pds)))
    means = pds[draws].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return PairDifference(
        pd=float(pds.mean()),
        pd_low=float(low),
        pd_high=float(high),
        disagreement=top1_disagreement(p1, p2),
        examples=len(pds),
    )


def _as_matrix(p: Probabilities) -> npt.NDArray[np.float64]:
    array = np.asarray(p, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(
            f"probabilities must be [examples] or [examples, classes], got {array.shape}"
        )
    return array
