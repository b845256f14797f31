r"""Backpropagation through time written out: the recursion, and the gradient sorted by lag.

For one layer of the Elman recurrence (t = 1..T)

.. math::

    a_t = W_{hh} h_{t-1} + W_{ih} x_t + b, \qquad h_t = \phi(a_t),

and a loss :math:`L = \sum_t L_t`, given the *local* gradients
:math:`g_t = \nabla_{h_t} L_t` (each with every other state held fixed), BPTT is the recursion
from k = T down to 1, with :math:`\delta_{T+1} = 0`,

.. math::

    \bar h_k = g_k + W_{hh}^\top \delta_{k+1}, \qquad
    \delta_k = \phi'(a_k) \odot \bar h_k,

and :math:`\partial L/\partial W_{hh} = \sum_k \delta_k h_{k-1}^\top`,
:math:`\partial L/\partial W_{ih} = \sum_k \delta_k x_k^\top`,
:math:`\partial L/\partial b = \sum_k \delta_k` (:func:`bptt_gradients`). Sorting the terms of
:math:`\partial L/\partial W_{hh}` by their lag :math:`\ell = t - k`, the number of step Jacobians
:math:`J_j = \operatorname{diag}(\phi'(a_j)) W_{hh}` a path from :math:`L_t` back to the use of
:math:`W_{hh}` at step k crosses, gives

.. math::

    \frac{\partial L}{\partial W_{hh}} = \sum_{\ell=0}^{T-1} C_\ell, \qquad
    C_\ell = \sum_{t=\ell+1}^{T} \operatorname{diag}(\phi'(a_{t-\ell}))
    \Big(\frac{\partial h_t}{\partial h_{t-\ell}}\Big)^{\top} g_t\, h_{t-\ell-1}^\top

(:func:`lag_contributions`). :math:`\phi'` is read off the stored states: :math:`1 - h_t^2` for
tanh, :math:`[h_t > 0]` for relu. ``include_dphi=False`` drops every
:math:`\operatorname{diag}(\phi'(a_k))` from the backward pass while keeping the tanh (or relu)
states of the forward pass: the backward pass of a linear recurrence run on the trajectory of a
nonlinear one, which is the gradient of no network.

Shapes (torch's layout, ``batch_first=False``): ``input`` (T, B, I); ``states`` (T+1, B, H)
holding :math:`h_0, \dots, h_T`; ``weight_hh`` (H, H); ``grad_states`` (T, B, H), row t-1 holding
:math:`g_t`. Batches are summed over, as a loss summed over the batch would.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.checks import check_bool, check_choice, check_like, check_tensor

__all__ = ["bptt_gradients", "lag_contributions"]

_NONLINEARITIES = ("tanh", "relu")


def _check(states, weight_hh, grad_states, nonlinearity, include_dphi) -> None:
    check_tensor("states", states, floating=True)
    check_tensor("weight_hh", weight_hh)
    check_tensor("grad_states", grad_states)
    if states.dim() != 3 or states.shape[0] < 2:
        raise ValueError(f"states: expected shape (T+1, B, H) with T >= 1, "
                         f"got {tuple(states.shape)}")
    T, B, H = states.shape[0] - 1, states.shape[1], states.shape[2]
    if tuple(weight_hh.shape) != (H, H):
        raise ValueError(f"weight_hh: expected shape ({H}, {H}) like states' H, "
                         f"got {tuple(weight_hh.shape)}")
    if tuple(grad_states.shape) != (T, B, H):
        raise ValueError(f"grad_states: expected shape ({T}, {B}, {H}), one row per step, "
                         f"got {tuple(grad_states.shape)}")
    check_like("weight_hh", weight_hh, "states", states)
    check_like("grad_states", grad_states, "states", states)
    check_choice("nonlinearity", nonlinearity, _NONLINEARITIES)
    check_bool("include_dphi", include_dphi)


def _dphi(states: Tensor, nonlinearity: str) -> Tensor:
    """phi'(a_t) for t = 1..T, from h_t = phi(a_t): shape (T, B, H)."""
    h = states[1:]
    if nonlinearity == "tanh":
        return 1 - h * h                            # tanh' = 1 - tanh^2
    return (h > 0).to(h.dtype)                      # relu' = [a > 0] = [h > 0]


def bptt_gradients(input: Tensor, states: Tensor, weight_hh: Tensor,
                   grad_states: Tensor, *, nonlinearity: str = "tanh",
                   include_dphi: bool = True) -> dict[str, Tensor]:
    r"""The gradients of L with respect to :math:`W_{ih}`, :math:`W_{hh}` and b.

    The recursion of the module docstring, one step per iteration from k = T down
    to 1, rows as vectors (so :math:`W_{hh}^\top \delta_k` is ``delta @ weight_hh``).
    Returns ``{"weight_ih": (H, I), "weight_hh": (H, H), "bias": (H,)}``; PyTorch's
    two biases ``bias_ih_l0`` and ``bias_hh_l0`` both receive ``"bias"``, since only
    their sum enters :math:`a_t`.
    """
    _check(states, weight_hh, grad_states, nonlinearity, include_dphi)
    check_tensor("input", input)
    T, B, H = grad_states.shape
    if input.dim() != 3 or tuple(input.shape[:2]) != (T, B):
        raise ValueError(f"input: expected shape ({T}, {B}, I) like grad_states, "
                         f"got {tuple(input.shape)}")
    check_like("input", input, "states", states)
    dphi = _dphi(states, nonlinearity)                 # (T, B, H)
    d_weight_hh = torch.zeros_like(weight_hh)          # (H, H)
    d_weight_ih = input.new_zeros(H, input.shape[2])   # (H, I)
    d_bias = input.new_zeros(H)                        # (H,)
    carried = torch.zeros_like(states[0])              # (B, H): W_hh^T delta_{k+1}
    for k in reversed(range(T)):                       # row k is step k + 1
        h_bar = grad_states[k] + carried               # g_k + W_hh^T delta_{k+1}
        delta = dphi[k] * h_bar if include_dphi else h_bar   # phi'(a_k) * bar h_k
        d_weight_hh += delta.T @ states[k]             # delta_k h_{k-1}^T, batch summed
        d_weight_ih += delta.T @ input[k]              # delta_k x_k^T
        d_bias += delta.sum(0)                         # delta_k
        carried = delta @ weight_hh                    # (B, H)
    return {"weight_ih": d_weight_ih, "weight_hh": d_weight_hh, "bias": d_bias}


def lag_contributions(states: Tensor, weight_hh: Tensor, grad_states: Tensor, *,
                      nonlinearity: str = "tanh", include_dphi: bool = True) -> Tensor:
    r"""The lag terms :math:`C_0, \dots, C_{T-1}` of :math:`\partial L/\partial W_{hh}`.

    Returns C of shape (T, H, H), C[l] the lag-l term. All T losses are carried back
    together, one step Jacobian per lag: at lag :math:`\ell` the rows hold
    :math:`(\partial h_t/\partial h_{t-\ell})^\top g_t` for :math:`t = \ell+1..T`.
    ``C.sum(0)`` is ``bptt_gradients(...)["weight_hh"]``; :math:`C_{T-1}` is zero
    when :math:`h_0 = 0`, since its one term ends in :math:`h_0^\top`.
    """
    _check(states, weight_hh, grad_states, nonlinearity, include_dphi)
    T = grad_states.shape[0]
    dphi = _dphi(states, nonlinearity)                 # (T, B, H)
    terms = []
    carried = grad_states                              # (T - lag, B, H): t = lag+1..T
    for lag in range(T):
        n = T - lag                                    # steps k = t - lag = 1..n
        delta = carried * dphi[:n] if include_dphi else carried
        terms.append(torch.einsum("kbi,kbj->ij", delta, states[:n]))  # delta h_{k-1}^T
        carried = (delta @ weight_hh)[1:]              # one step further back
    return torch.stack(terms)                          # (T, H, H)
