"""rnnlab.cliff against independent references: a plain-Python float loop for the states and the
loss, the closed-form sum over lags for dE/db, the fixed-point equation for b*, and a count of
the fixed points on a fine grid for the saddle-node biases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnlab.cliff import basin_boundary, saddle_nodes, unit_final_state, unit_loss


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _trajectory(b: float, T: int, w: float = 5.0, h0: float = 0.5) -> list[float]:
    xs = [h0]
    for _ in range(T):
        xs.append(w * _sigmoid(xs[-1]) + b)
    return xs


def _closed_form_slope(b: float, T: int, w: float = 5.0, target: float = 0.7) -> float:
    """dE/db = 2(σ(h_T) - y) σ'(h_T) Σ_k Π_{j=k+1..T} w σ'(x_{j-1}), from a float trajectory."""
    xs = _trajectory(b, T, w)
    slopes = [w * _sigmoid(x) * (1 - _sigmoid(x)) for x in xs]      # slopes[j-1] = J_j
    total = sum(math.prod(slopes[j - 1] for j in range(k + 1, T + 1)) for k in range(1, T + 1))
    s = _sigmoid(xs[-1])
    return 2 * (s - target) * s * (1 - s) * total


@pytest.mark.parametrize("T", [1, 10, 50])
def test_unit_loss_matches_a_python_float_loop(T):
    biases = [-3.0, -2.7, -2.6, -2.0, 0.3]
    b = torch.tensor(biases, dtype=torch.float64)
    expected = [(_sigmoid(_trajectory(v, T)[-1]) - 0.7) ** 2 for v in biases]
    assert torch.allclose(unit_loss(b, T), torch.tensor(expected, dtype=torch.float64),
                          rtol=1e-12, atol=1e-15)
    assert torch.allclose(unit_final_state(b, T),
                          torch.tensor([_trajectory(v, T)[-1] for v in biases],
                                       dtype=torch.float64), rtol=1e-12)


@pytest.mark.parametrize("T", [5, 25, 50])
def test_unit_loss_gradient_is_the_sum_over_lags(T):
    biases = [-3.0, -2.65, -2.6123, -2.5, -1.0]
    b = torch.tensor(biases, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(unit_loss(b, T).sum(), b)
    expected = torch.tensor([_closed_form_slope(v, T) for v in biases], dtype=torch.float64)
    assert torch.allclose(slope, expected, rtol=1e-9, atol=1e-14)


def test_weight_broadcasts_against_the_biases():
    w = torch.tensor([[4.5], [5.0], [6.0]], dtype=torch.float64)          # (3, 1)
    b = torch.tensor([-3.0, -2.6, -2.0], dtype=torch.float64)             # (3,)
    surface = unit_loss(b, 20, w=w)
    assert surface.shape == (3, 3)
    for i, wi in enumerate([4.5, 5.0, 6.0]):
        for j, bj in enumerate([-3.0, -2.6, -2.0]):
            reference = (_sigmoid(_trajectory(bj, 20, wi)[-1]) - 0.7) ** 2
            assert math.isclose(surface[i, j].item(), reference, rel_tol=1e-12)


def test_basin_boundary_is_where_the_start_is_a_fixed_point_and_h_T_switches_attractor():
    b_star = basin_boundary()
    assert math.isclose(5.0 * _sigmoid(0.5) + b_star, 0.5, abs_tol=1e-15)
    below, above = (_trajectory(b_star + d, 400)[-1] for d in (-1e-6, 1e-6))
    assert below < -1.0 < 1.0 < above                         # lower vs upper attractor
    assert math.isclose(basin_boundary(6.0, 0.0), -3.0, abs_tol=1e-15)   # 0 - 6 σ(0)


def _fixed_point_count(b: float, w: float) -> int:
    x = np.linspace(-20.0, 20.0, 400_001)
    f = w / (1.0 + np.exp(-x)) + b - x                        # zeros are the fixed points
    return int(np.count_nonzero(np.sign(f[1:]) != np.sign(f[:-1])))


@pytest.mark.parametrize("w", [4.5, 5.0, 8.0])
def test_saddle_nodes_bound_the_window_with_three_fixed_points(w):
    b_minus, b_plus = saddle_nodes(w)
    assert b_minus < b_plus
    eps = 1e-3 * (b_plus - b_minus)
    assert _fixed_point_count(b_minus - eps, w) == 1
    assert _fixed_point_count(b_minus + eps, w) == 3
    assert _fixed_point_count(b_plus - eps, w) == 3
    assert _fixed_point_count(b_plus + eps, w) == 1


def test_saddle_nodes_need_w_above_four():
    with pytest.raises(ValueError, match="w: expected w > 4"):
        saddle_nodes(4.0)


def test_dtype_and_device_follow_the_biases():
    b = torch.linspace(-3, -2, 7, dtype=torch.float32)
    assert unit_loss(b, 10).dtype == torch.float32
    assert unit_final_state(b, 3).shape == (7,)


@pytest.mark.parametrize("call, error, message", [
    (lambda: unit_loss([-2.6], 10), TypeError, "b: expected a torch.Tensor"),
    (lambda: unit_loss(torch.tensor([1, 2]), 10), TypeError, "b: expected a floating"),
    (lambda: unit_loss(torch.zeros(2), 0), ValueError, "T: expected an int >= 1"),
    (lambda: unit_loss(torch.zeros(2), 2.0), TypeError, "T: expected an int"),
    (lambda: unit_loss(torch.zeros(2), 2, w="5"), TypeError, "w: expected a real number"),
    (lambda: unit_loss(torch.zeros(2), 2, w=torch.ones(2, dtype=torch.float64)), TypeError,
     r"w: expected dtype torch.float32 \(the dtype of b\)"),
    (lambda: unit_loss(torch.zeros(2), 2, w=torch.ones(2, device="meta")), ValueError,
     r"w: expected device cpu \(the device of b\)"),
    (lambda: unit_loss(torch.zeros(2), 2, target=math.nan), ValueError, "target: expected a"),
    (lambda: basin_boundary(h0=None), TypeError, "h0: expected a real number"),
])
def test_arguments_are_checked_first(call, error, message):
    with pytest.raises(error, match=message):
        call()
