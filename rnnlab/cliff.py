r"""The one-unit recurrent network whose loss has a cliff (Pascanu et al., 2013, §2.3).

After Doya (1992) [``doya1992bifurcations``] and Pascanu, Mikolov & Bengio (2013)
[``pascanu2013difficulty``]: a scalar state driven only by its own past and a bias,

.. math::
    h_t = w\,\sigma(h_{t-1}) + b, \qquad h_0 \text{ given}, \qquad
    E(b) = \big(\sigma(h_T) - y\big)^2 ,

with :math:`\sigma` the logistic sigmoid. For :math:`w > 4` the map has two attractors for
biases between the saddle-node values :math:`b_- < b_+`, separated by an unstable fixed point;
the start :math:`h_0` changes basin at :math:`b^\ast = h_0 - w\sigma(h_0)`, where :math:`E`
jumps and :math:`\lvert dE/db\rvert` grows about like :math:`(w\sigma'(h_0))^T` with ``T``.

Everything is elementwise over a tensor of biases (``b`` and ``w`` broadcast), so a whole loss
curve or loss surface is one call, and autograd gives :math:`dE/db` for every bias at once.
Chapters 4 and 5 of the book use it: the first to find the cliff, the second to cross it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnlab.checks import check_int, check_like, check_number, check_tensor

__all__ = ["unit_final_state", "unit_loss", "basin_boundary", "saddle_nodes"]

W_DEFAULT, H0_DEFAULT, TARGET_DEFAULT = 5.0, 0.5, 0.7


def _check_weight(w, b: Tensor):
    if isinstance(w, Tensor):
        return check_like("w", w, "b", b)
    return check_number("w", w)


def unit_final_state(b: Tensor, T: int, *, w: float | Tensor = W_DEFAULT,
                     h0: float = H0_DEFAULT) -> Tensor:
    r"""The state :math:`h_T` after ``T`` steps of :math:`h_t = w\sigma(h_{t-1}) + b`.

    Args:
        b: biases, any shape (floating point); differentiable.
        T: number of steps, ``>= 1``.
        w: the recurrent weight, a number or a tensor broadcastable with ``b`` (same dtype and
            device).
        h0: the initial state :math:`h_0`.

    Returns:
        :math:`h_T`, shaped like ``b`` broadcast with ``w``.
    """
    check_tensor("b", b, floating=True)
    check_int("T", T, minimum=1)
    w = _check_weight(w, b)
    h0 = check_number("h0", h0)
    h = torch.full(torch.broadcast_shapes(b.shape, torch.as_tensor(w).shape), h0,
                   dtype=b.dtype, device=b.device)
    for _ in range(T):
        h = w * torch.sigmoid(h) + b                # h_t = w σ(h_{t-1}) + b
    return h


def unit_loss(b: Tensor, T: int, *, w: float | Tensor = W_DEFAULT, h0: float = H0_DEFAULT,
              target: float = TARGET_DEFAULT) -> Tensor:
    r""":math:`E(b) = (\sigma(h_T) - y)^2` elementwise, with ``y = target``.

    Arguments as in :func:`unit_final_state`. The gradient :math:`dE/db` is
    :math:`2(\sigma(h_T) - y)\,\sigma'(h_T) \sum_{k=1}^{T} \prod_{j=k+1}^{T} w\sigma'(h_{j-1})`,
    a sum over lags :math:`T - k` of products of step Jacobians; autograd computes it.
    """
    target = check_number("target", target)
    return (torch.sigmoid(unit_final_state(b, T, w=w, h0=h0)) - target) ** 2


def basin_boundary(w: float = W_DEFAULT, h0: float = H0_DEFAULT) -> float:
    r"""The bias :math:`b^\ast = h_0 - w\sigma(h_0)` at which :math:`h_0` is a fixed point.

    For :math:`w > 4` and :math:`b_- < b^\ast < b_+` (see :func:`saddle_nodes`) it is the
    unstable one, so :math:`h_0` starts in the lower basin for :math:`b < b^\ast` and in the upper
    one for :math:`b > b^\ast`: the place of the cliff once ``T`` is large.
    """
    w, h0 = check_number("w", w), check_number("h0", h0)
    return h0 - w / (1.0 + math.exp(-h0))


def saddle_nodes(w: float = W_DEFAULT) -> tuple[float, float]:
    r"""The saddle-node biases :math:`(b_-, b_+)` between which the map has three fixed points.

    Where :math:`w\sigma'(h) = 1`, i.e. :math:`\sigma(h_\pm) = \tfrac12(1 \pm \sqrt{1 - 4/w})`,
    :math:`b_\pm = h_\pm - w\sigma(h_\pm)`. Only for :math:`w > 4` (ValueError otherwise).
    """
    w = check_number("w", w)
    if not w > 4:
        raise ValueError(f"w: expected w > 4 (two attractors exist only then), got {w}")
    biases = []
    for sign in (1.0, -1.0):
        s = (1.0 + sign * math.sqrt(1.0 - 4.0 / w)) / 2.0            # σ(h±)
        h = math.log(s / (1.0 - s))                                    # h± = logit σ(h±)
        biases.append(h - w * s)
    return min(biases), max(biases)
