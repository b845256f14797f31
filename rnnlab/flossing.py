r"""Gradient flossing (Engelken 2023): Lyapunov exponents with gradients, pushed toward zero.

For a single-layer tanh (or relu) network :math:`h_t = \phi(a_t)`,
:math:`a_t = W_{hh} h_{t-1} + W_{ih} x_t + b`, the step Jacobian is
:math:`J_t = \operatorname{diag}(\phi'(a_t))\, W_{hh}` and the ``k`` largest Lyapunov exponents
along the trajectory come from the QR method (Benettin et al. 1980): with :math:`Q_0` a fixed
orthonormal ``H x k`` basis,

.. math::
    J_t\, Q_{t-1} = Q_t R_t \quad (t = 1..T), \qquad
    \lambda_i = \frac1T \sum_{t=1}^{T} \log\lvert (R_t)_{ii}\rvert .

:func:`rnnlab.jacobians.lyapunov_exponents` computes the same numbers without a graph, with
the same recurrence (:func:`rnnlab.jacobians.qr_exponents`). Here the states come from
:func:`rnnlab.loop.unroll` and every operation is recorded by autograd (``torch.linalg.qr``
differentiates a reduced QR of a tall matrix of full rank), so :math:`\lambda_i` can be
differentiated with respect to :math:`W_{hh}`, :math:`W_{ih}` and the biases, through
:math:`W_{hh}` directly and through the slopes :math:`\phi'(a_t)` of the trajectory.
Gradient flossing minimises

.. math::
    L_{\text{floss}} = \sum_{i=1}^{k} \lambda_i^2

(averaged over the batch), which drives the top ``k`` exponents toward 0, where the long-lag
terms of the gradient neither vanish nor explode; :func:`floss_` takes those optimiser steps.

Shapes: ``B`` batch, ``T`` time, ``I`` input_size, ``H`` hidden_size. ``input`` is
``(T, B, I)``, ``(B, T, I)`` when ``model.batch_first``, or unbatched ``(T, I)``; ``hx`` in
torch's format ``(1, B, H)`` (unbatched ``(1, H)``), zeros when None.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from rnnlab.checks import check_int, check_number, check_tensor, check_type
from rnnlab.jacobians import qr_exponents
from rnnlab.loop import trajectory

__all__ = ["lyapunov_exponents", "flossing_loss", "floss_"]

_SUPPORTED = ("a single-layer unidirectional torch.nn.RNN (tanh or relu; rnnlab.RNN and "
              "parametrized modules included)")


def _check_model(model) -> None:
    check_type("model", model, torch.nn.RNN, _SUPPORTED)
    if model.num_layers != 1 or model.bidirectional:
        raise ValueError(f"model: expected {_SUPPORTED}, got num_layers={model.num_layers}, "
                         f"bidirectional={model.bidirectional}")


def _slopes(model, input: Tensor, hx) -> Tensor:
    r""":math:`\phi'(a_t)` for t = 1..T along the trajectory, ``(T, B, H)``, with a graph.

    The states are those of :func:`rnnlab.loop.unroll` (:func:`rnnlab.loop.trajectory`, which
    checks ``input`` and ``hx``):
    :math:`\tanh'(a_t) = 1 - h_t^2`, :math:`\mathrm{relu}'(a_t) = [h_t > 0]`.
    """
    seq, (states,) = trajectory(model, input, hx)
    h = torch.stack(states[1:])                                   # (T, B, H) or (T, H)
    h = h if seq.batched else h.unsqueeze(1)                      # (T, B, H)
    return 1 - h * h if model.mode == "RNN_TANH" else (h > 0).to(h.dtype)


def _step_product(slope: Tensor, weight_hh: Tensor, Q: Tensor) -> Tensor:
    r""":math:`J_t Q = \operatorname{diag}(\phi'(a_t))\, W_{hh} Q` without forming
    :math:`J_t`: slope (B, H, 1), Q (H, k) or (B, H, k)."""
    return slope * (weight_hh @ Q)                                # (B, H, k)


def lyapunov_exponents(model, input: Tensor, hx: Tensor | None = None,
                       k: int | None = None) -> Tensor:
    r"""The ``k`` largest Lyapunov exponents (module docstring), differentiable.

    Natural log per step, sorted descending, ``(B, k)`` (``(k,)`` for unbatched input); all
    ``H`` when ``k`` is None (the state size is ``S = H``). The recurrence is
    :func:`rnnlab.jacobians.qr_exponents`, the one that
    :func:`rnnlab.jacobians.lyapunov_exponents` runs under ``no_grad``, from the same
    :math:`Q_0`, so the two agree to rounding; here the products :math:`J_t Q` and the QR
    factorisations are recorded by autograd.
    """
    _check_model(model)
    slopes = _slopes(model, input, hx).unsqueeze(-1)              # (T, B, H, 1)
    W = model.weight_hh_l0                                        # (H, H)
    products = (partial(_step_product, slope, W) for slope in slopes)
    exponents = qr_exponents(products, model.hidden_size, k, W)
    return exponents[0] if input.dim() == 2 else exponents


def flossing_loss(exponents: Tensor, target: float = 0.0) -> Tensor:
    r""":math:`\sum_i (\lambda_i - \text{target})^2`, averaged over any leading (batch)
    dimensions of ``exponents`` (``(..., k)``): Engelken's flossing loss for ``target = 0``."""
    check_tensor("exponents", exponents, floating=True)
    if exponents.dim() < 1:
        raise ValueError(f"exponents: expected shape (..., k), got {tuple(exponents.shape)}")
    target = check_number("target", target)
    return ((exponents - target) ** 2).sum(-1).mean()


def floss_(model, input: Tensor, steps: int, *, k: int = 1, lr: float = 1e-2,
           hx: Tensor | None = None) -> list[float]:
    r"""Floss ``model`` in place: ``steps`` Adam steps (learning rate ``lr``) on
    :func:`flossing_loss` of its ``k`` largest exponents along ``input``.

    All parameters that require a gradient move. Returns the loss before each step; stops
    early (without stepping) if the loss is not finite.
    """
    _check_model(model)
    check_int("steps", steps, minimum=1)
    check_int("k", k, minimum=1)
    lr = check_number("lr", lr, positive=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = flossing_loss(lyapunov_exponents(model, input, hx, k))
        losses.append(loss.item())
        if not torch.isfinite(loss):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return losses
