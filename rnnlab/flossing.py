r"""Gradient flossing (Engelken 2023): Lyapunov exponents with gradients, pushed toward zero.

For a single-layer tanh (or relu) network :math:`h_t = \phi(a_t)`,
:math:`a_t = W_{hh} h_{t-1} + W_{ih} x_t + b`, the step Jacobian is
:math:`J_t = \operatorname{diag}(\phi'(a_t))\, W_{hh}` and the ``k`` largest Lyapunov exponents
along the trajectory come from the QR method (Benettin et al. 1980): with :math:`Q_0` a fixed
orthonormal ``H x k`` basis,

.. math::
    J_t\, Q_{t-1} = Q_t R_t \quad (t = 1..T), \qquad
    \lambda_i = \frac1T \sum_{t=1}^{T} \log\lvert (R_t)_{ii}\rvert .

:func:`rnnlab.jacobians.lyapunov_exponents` computes the same numbers without a graph. Here every
operation is recorded by autograd (``torch.linalg.qr`` differentiates a reduced QR of a tall
matrix of full rank), so :math:`\lambda_i` can be differentiated with respect to
:math:`W_{hh}`, :math:`W_{ih}` and the biases, through :math:`W_{hh}` directly and through the
slopes :math:`\phi'(a_t)` of the trajectory. Gradient flossing minimises

.. math::
    L_{\text{floss}} = \sum_{i=1}^{k} \lambda_i^2

(averaged over the batch), which drives the top ``k`` exponents toward 0, where the long-lag
terms of the gradient neither vanish nor explode; :func:`floss_` takes those optimiser steps.

Shapes: ``B`` batch, ``T`` time, ``I`` input_size, ``H`` hidden_size. ``input`` is
``(T, B, I)``, ``(B, T, I)`` when ``model.batch_first``, or unbatched ``(T, I)``; ``hx`` in
torch's format ``(1, B, H)`` (unbatched ``(1, H)``), zeros when None.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["lyapunov_exponents", "flossing_loss", "floss_"]

_SUPPORTED = ("a single-layer unidirectional torch.nn.RNN (tanh or relu; rnnlab.RNN and "
              "parametrized modules included)")
_START_SEED = 0          # Q_0: the same fixed basis as rnnlab.jacobians.lyapunov_exponents


def _check_model(model) -> None:
    if not isinstance(model, torch.nn.RNN):
        raise TypeError(f"model: expected {_SUPPORTED}, got {type(model).__name__}")
    if model.num_layers != 1 or model.bidirectional:
        raise ValueError(f"model: expected {_SUPPORTED}, got num_layers={model.num_layers}, "
                         f"bidirectional={model.bidirectional}")


def _slopes(model, input: Tensor, hx) -> Tensor:
    r""":math:`\phi'(a_t)` for t = 1..T along the trajectory, ``(T, B, H)``, with a graph."""
    if not isinstance(input, Tensor):
        raise TypeError(f"input: expected a torch.Tensor, got {type(input).__name__}")
    if input.dim() not in (2, 3) or input.shape[-1] != model.input_size:
        raise ValueError(f"input: expected (T, B, {model.input_size}) ((B, T, "
                         f"{model.input_size}) when batch_first, unbatched (T, "
                         f"{model.input_size})), got shape {tuple(input.shape)}")
    if input.shape[1 if input.dim() == 3 and model.batch_first else 0] < 1:
        raise ValueError(f"input: expected at least one time step, got shape "
                         f"{tuple(input.shape)}")
    output, _ = model(input, hx)
    if input.dim() == 2:
        h = output.unsqueeze(1)                                          # (T, 1, H)
    else:
        h = output.transpose(0, 1) if model.batch_first else output      # (T, B, H)
    return 1 - h * h if model.mode == "RNN_TANH" else (h > 0).to(h.dtype)


def lyapunov_exponents(model, input: Tensor, hx: Tensor | None = None,
                       k: int | None = None) -> Tensor:
    r"""The ``k`` largest Lyapunov exponents (module docstring), differentiable.

    Natural log per step, sorted descending, ``(B, k)`` (``(k,)`` for unbatched input); all
    ``H`` when ``k`` is None. :math:`Q_0` is the basis that
    :func:`rnnlab.jacobians.lyapunov_exponents` starts from, so the two agree to rounding.
    """
    _check_model(model)
    H = model.hidden_size
    if k is None:
        k = H
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= H:
        raise ValueError(f"k: expected None or an int in [1, H={H}], got {k!r}")
    slopes = _slopes(model, input, hx)                                    # (T, B, H)
    W = model.weight_hh_l0                                                # (H, H)
    start = torch.randn(H, k, generator=torch.Generator().manual_seed(_START_SEED),
                        dtype=torch.float64)
    Q = torch.linalg.qr(start).Q.to(W).expand(slopes.shape[1], H, k)     # (B, H, k)
    exponents = _qr_rates(slopes, W, Q).sort(dim=-1, descending=True).values
    return exponents[0] if input.dim() == 2 else exponents


def _qr_rates(slopes: Tensor, weight_hh: Tensor, Q: Tensor) -> Tensor:
    """(1/T) Σ_t log|diag R_t| with J_t Q_{t-1} = Q_t R_t, J_t = diag(φ'(a_t)) W_hh.

    slopes: (T, B, H), one row of φ'(a_t) per step; Q: the basis Q_0, (B, H, k).
    Returns (B, k), in the order of Q's columns.
    """
    total = 0
    for slope in slopes:                                        # (B, H)
        J_Q = slope.unsqueeze(-1) * (weight_hh @ Q)             # J_t Q_{t-1}: (B, H, k)
        Q, R = torch.linalg.qr(J_Q)
        total = total + R.diagonal(dim1=-2, dim2=-1).abs().log()  # log|(R_t)_ii|
    return total / len(slopes)


def flossing_loss(exponents: Tensor, target: float = 0.0) -> Tensor:
    r""":math:`\sum_i (\lambda_i - \text{target})^2`, averaged over any leading (batch)
    dimensions of ``exponents`` (``(..., k)``): Engelken's flossing loss for ``target = 0``."""
    if not isinstance(exponents, Tensor):
        raise TypeError(f"exponents: expected a Tensor, got {type(exponents).__name__}")
    if exponents.dim() < 1:
        raise ValueError(f"exponents: expected shape (..., k), got {tuple(exponents.shape)}")
    return ((exponents - target) ** 2).sum(-1).mean()


def floss_(model, input: Tensor, steps: int, *, k: int = 1, lr: float = 1e-2,
           hx: Tensor | None = None) -> list[float]:
    r"""Floss ``model`` in place: ``steps`` Adam steps (learning rate ``lr``) on
    :func:`flossing_loss` of its ``k`` largest exponents along ``input``.

    All parameters that require a gradient move. Returns the loss before each step; stops
    early (without stepping) if the loss is not finite.
    """
    _check_model(model)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
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
