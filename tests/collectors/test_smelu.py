"""SmeLU against its piecewise definition, evaluated naively in float64 Python."""

from __future__ import annotations

import math

import pytest
import torch

from trainlight.collectors.smelu import SmeLU


def naive_smelu(x: float, beta: float) -> float:
    if x <= -beta:
        return 0.0
    if x >= beta:
        return x
    return (x + beta) ** 2 / (4 * beta)


def naive_grad(x: float, beta: float) -> float:
    if x <= -beta:
        return 0.0
    if x >= beta:
        return 1.0
    return (x + beta) / (2 * beta)


@pytest.mark.parametrize("beta", [0.01, 0.5, 1.0, 3.0])
def test_values_and_gradients_match_the_piecewise_formula(beta: float) -> None:
    points = [-10.0, -beta - 1e-3, -beta, -beta / 2, 0.0, beta / 3, beta, beta + 1e-3, 7.5]
    x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    y = SmeLU(beta)(x)
    y.sum().backward()
    assert x.grad is not None
    for xi, yi, gi in zip(points, y.tolist(), x.grad.tolist(), strict=True):
        assert yi == pytest.approx(naive_smelu(xi, beta), abs=1e-12)
        assert gi == pytest.approx(naive_grad(xi, beta), abs=1e-12)


@pytest.mark.parametrize("edge_sign", [-1.0, 1.0])
def test_value_and_gradient_are_continuous_at_the_edges(edge_sign: float) -> None:
    beta = 0.7
    edge = edge_sign * beta
    eps = 1e-7
    x = torch.tensor([edge - eps, edge + eps], dtype=torch.float64, requires_grad=True)
    y = SmeLU(beta)(x)
    y.sum().backward()
    assert x.grad is not None
    assert abs(y[1].item() - y[0].item()) < 1e-6
    assert abs(x.grad[1].item() - x.grad[0].item()) < 1e-6


def test_huge_and_infinite_inputs_give_finite_gradients() -> None:
    x = torch.tensor([-math.inf, -1e30, 1e30, math.inf], requires_grad=True)
    y = SmeLU(1.0)(x)
    y.sum().backward()
    assert x.grad is not None
    assert y.tolist() == [0.0, 0.0, x[2].item(), math.inf]
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_bfloat16_and_shapes_are_kept() -> None:
    x = torch.randn(4, 3, 5, dtype=torch.bfloat16)
    y = SmeLU(0.5)(x)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    assert (y >= 0).all()


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, math.inf])
def test_a_bad_beta_is_refused_with_its_value(beta: float) -> None:
    with pytest.raises(ValueError, match="beta"):
        SmeLU(beta)
