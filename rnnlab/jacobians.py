r"""State Jacobians of a recurrent network: the product that vanishes or explodes.

For a single-layer, unidirectional ``torch.nn.RNN``/``LSTM``/``GRU`` (or a subclass such as
``rnnlab.RNN``), the state after step ``t`` is :math:`s_t` (:math:`s_t = h_t`, size ``S = H``;
for the LSTM :math:`s_t = (h_t, c_t)` concatenated, ``S = 2H``), :math:`s_0` comes from ``hx``
and

.. math::
    \frac{\partial s_T}{\partial s_t} = \prod_{k=t+1}^{T} J_k, \qquad
    J_k = \frac{\partial s_k}{\partial s_{k-1}}
    \quad (\text{the factor of largest } k \text{ on the left}).

The step Jacobians are computed in closed form, batched over time and batch (no autograd):

* Elman, :math:`h_t = \phi(a_t)`, :math:`a_t = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}`:
  :math:`J_t = \operatorname{diag}(\phi'(a_t))\, W_{hh}`, with
  :math:`\tanh'(a_t) = 1 - h_t^2` and :math:`\mathrm{relu}'(a_t) = [a_t > 0]`.
* LSTM (gates :math:`i, f, g, o` as in :func:`rnnlab.cells.lstm_step`, :math:`W_{h\cdot}` the
  matching ``H``-row blocks of ``weight_hh``, :math:`\sigma' = \sigma(1-\sigma)`):

  .. math::
      \begin{aligned}
      \frac{\partial c_t}{\partial h_{t-1}} &= \operatorname{diag}(g_t\, i_t(1-i_t))\, W_{hi}
          + \operatorname{diag}(c_{t-1}\, f_t(1-f_t))\, W_{hf}
          + \operatorname{diag}(i_t\, (1-g_t^2))\, W_{hg} \\
      \frac{\partial c_t}{\partial c_{t-1}} &= \operatorname{diag}(f_t) \\
      \frac{\partial h_t}{\partial h_{t-1}} &= \operatorname{diag}(\tanh(c_t)\, o_t(1-o_t))\, W_{ho}
          + \operatorname{diag}(o_t\, (1-\tanh^2 c_t))\, \frac{\partial c_t}{\partial h_{t-1}} \\
      \frac{\partial h_t}{\partial c_{t-1}} &= \operatorname{diag}(o_t\, (1-\tanh^2 c_t)\, f_t),
      \qquad
      J_t = \begin{pmatrix} \partial h_t/\partial h_{t-1} & \partial h_t/\partial c_{t-1} \\
                            \partial c_t/\partial h_{t-1} & \partial c_t/\partial c_{t-1}
            \end{pmatrix}
      \end{aligned}

* GRU (gates :math:`r, z, n` as in :func:`rnnlab.cells.gru_step`,
  :math:`m_t = W_{hn} h_{t-1} + b_{hn}` so that :math:`n_t = \tanh(W_{in} x_t + b_{in} + r_t m_t)`):

  .. math::
      J_t = \operatorname{diag}(z_t)
          + \operatorname{diag}\big((h_{t-1} - n_t)\, z_t(1-z_t)\big)\, W_{hz}
          + \operatorname{diag}\big((1-z_t)(1-n_t^2)\, r_t\big)\, W_{hn}
          + \operatorname{diag}\big((1-z_t)(1-n_t^2)\, m_t\, r_t(1-r_t)\big)\, W_{hr}

Shapes: ``B`` batch, ``T`` time, ``I`` input_size, ``H`` hidden_size, ``S`` state size.
``input`` is ``(T, B, I)``, or ``(B, T, I)`` when ``model.batch_first``, or unbatched ``(T, I)``;
for unbatched input every result drops its ``B`` dimension, as torch does. ``hx`` is in torch's
format: ``h_0`` of shape ``(1, B, H)`` (unbatched ``(1, H)``), ``(h_0, c_0)`` for the LSTM; zeros
when ``None``. Results are on the model's device, in its dtype, and detached from autograd.

The states :math:`s_0, \dots, s_T` are those of :func:`rnnlab.loop.unroll` (which also checks
``input`` and ``hx``); the gates are recomputed from them, batched over time, under
:func:`torch.no_grad`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import Tensor

from rnnlab.checks import check_int
from rnnlab.layout import check_recurrent, weights
from rnnlab.loop import trajectory

__all__ = ["step_jacobians", "state_jacobians", "jacobian_log_norms", "lyapunov_exponents",
           "qr_exponents"]

_SUPPORTED = ("a single-layer unidirectional torch.nn.RNN/LSTM/GRU (or a subclass) without "
              "proj_size: num_layers=1, bidirectional=False, proj_size=0")
_CHUNK = 64             # time steps of step Jacobians held in memory at once by the long loops


# --------------------------------------------------------------------------------------------
# The state trajectory (from rnnlab.loop.unroll) and the step Jacobians in closed form
# --------------------------------------------------------------------------------------------

class _Steps(NamedTuple):
    r"""Step Jacobians :math:`J_t` of L steps, by column blocks.

    ``dense`` (L, B, S, H) holds the columns of :math:`\partial s_t/\partial h_{t-1}`. For the
    LSTM the columns of :math:`\partial s_t/\partial c_{t-1}` are diagonal blocks,
    ``diag`` = (d, f) with :math:`\partial h_t/\partial c_{t-1} = \operatorname{diag}(d)` and
    :math:`\partial c_t/\partial c_{t-1} = \operatorname{diag}(f)`, each (L, B, H); else None.
    """

    dense: Tensor
    diag: tuple[Tensor, Tensor] | None

    def full(self) -> Tensor:
        """The matrices :math:`J_t`, (L, B, S, S)."""
        if self.diag is None:
            return self.dense
        d, f = self.diag
        return torch.cat((self.dense, torch.cat((torch.diag_embed(d), torch.diag_embed(f)),
                                                dim=-2)), dim=-1)


class _Trajectory:
    """The weights, the input projections and the states s_0..s_T of one model on one input,
    as :func:`rnnlab.loop.unroll` computes them (call under ``torch.no_grad``)."""

    def __init__(self, model, input, hx) -> None:
        check_recurrent("model", model)
        for name, value, ok in (("num_layers", model.num_layers, 1),
                                ("bidirectional", model.bidirectional, False),
                                ("proj_size", getattr(model, "proj_size", 0), 0)):
            if value != ok:
                raise ValueError(f"model: expected {_SUPPORTED}, got {name}={value}")
        seq, (states,) = trajectory(model, input, hx)
        self.mode = model.mode                      # RNN_TANH, RNN_RELU, LSTM, GRU
        w = weights(model, 0, 0)
        self.w_hh = w.weight_hh.detach()
        self.b_hh = None if w.bias_hh is None else w.bias_hh.detach()
        self.unbatched = not seq.batched
        x = seq.data.unsqueeze(1) if self.unbatched else seq.data                # (T, B, I)
        self.gi = torch.nn.functional.linear(x, w.weight_ih.detach(),
                                             None if w.bias_ih is None else w.bias_ih.detach())
        self.T, self.B = x.shape[:2]
        self.H = model.hidden_size
        self.S = 2 * self.H if self.mode == "LSTM" else self.H
        hs, cs = zip(*states) if self.mode == "LSTM" else (states, None)
        self.h = torch.stack(hs).reshape(self.T + 1, self.B, self.H)             # (T+1, B, H)
        self.c = None if cs is None else torch.stack(cs).reshape(self.T + 1, self.B, self.H)

    def steps(self, lo: int, hi: int) -> _Steps:
        """J_t = ∂s_t/∂s_{t-1} for t = lo+1..hi in closed form (module docstring).

        Gate activations are recomputed from s_{t-1} and the input projections here, batched.
        """
        h_prev = self.h[lo:hi]                                               # (L, B, H)
        if self.mode in ("RNN_TANH", "RNN_RELU"):
            h = self.h[lo + 1:hi + 1]
            d = 1 - h * h if self.mode == "RNN_TANH" else (h > 0).to(h.dtype)
            return _Steps(d.unsqueeze(-1) * self.w_hh, None)                 # (L, B, H, H)
        gh = torch.nn.functional.linear(h_prev, self.w_hh, self.b_hh)       # (L, B, G*H)
        if self.mode == "LSTM":
            i, f, g, o = (self.gi[lo:hi] + gh).chunk(4, dim=-1)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            tc = self.c[lo + 1:hi + 1].tanh()
            k_c = (g * i * (1 - i), self.c[lo:hi] * f * (1 - f), i * (1 - g * g))
            dc_dh = _diag_sum(k_c, self.w_hh[:3 * self.H])                  # (L, B, H, H)
            do = o * (1 - tc * tc)                                           # ∂h_t/∂c_t
            dh_dh = _diag_sum((tc * o * (1 - o),), self.w_hh[3 * self.H:]) \
                + do.unsqueeze(-1) * dc_dh
            return _Steps(torch.cat((dh_dh, dc_dh), dim=-2), (do * f, f))   # (L, B, 2H, H)
        i_r, i_z, i_n = self.gi[lo:hi].chunk(3, dim=-1)
        h_r, h_z, m = gh.chunk(3, dim=-1)
        r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
        n = (i_n + r * m).tanh()
        dn = (1 - z) * (1 - n * n)                                           # ∂h_t/∂(pre-act of n)
        k = (dn * m * r * (1 - r), (h_prev - n) * z * (1 - z), dn * r)
        return _Steps(_diag_sum(k, self.w_hh) + torch.diag_embed(z), None)  # (L, B, H, H)

    def batched(self, result: Tensor, dim: int) -> Tensor:
        """Drop the batch dimension ``dim`` of a result for unbatched input."""
        return result.squeeze(dim) if self.unbatched else result


def _diag_sum(coefficients: tuple[Tensor, ...], weight: Tensor) -> Tensor:
    """Σ_g diag(k_g) W_g for coefficients k_g (L, B, H) and W = [W_1; ...; W_G] (G*H, H)."""
    k = torch.cat(coefficients, dim=-1)                                      # (L, B, G*H)
    L, B, GH = k.shape
    H = weight.shape[1]
    return (k.unsqueeze(-1) * weight).reshape(L, B, GH // H, H, H).sum(2)   # (L, B, H, H)


def _backward_products(run: _Trajectory, lo: int, hi: int, X: Tensor, out: Tensor,
                       nu: Tensor) -> None:
    r"""Fill ``out[t-lo]`` (B, S, r) with :math:`X_t = J_{t+1}^\top X_{t+1} / \nu_t` for
    t = hi-1 .. lo, from :math:`X = X_{hi}` (B, S, r), and ``nu[t-lo]`` (B, 1, 1) with
    :math:`\nu_t`, the Frobenius norm that makes :math:`X_t` a unit matrix.

    The LSTM's :math:`J^\top` has dense rows only for :math:`h_{t-1}`; its rows for
    :math:`c_{t-1}` are :math:`\operatorname{diag}(d) X^{(h)} + \operatorname{diag}(f) X^{(c)}`,
    so a step costs one (H, S) @ (S, r) product instead of an (S, S) @ (S, r) one. Rows are
    written in place into ``out``, three to six kernel calls a step.
    """
    steps = run.steps(lo, hi)
    H, tiny = run.H, torch.finfo(X.dtype).tiny
    dense_t = steps.dense.mT.unbind(0)                                       # L x (B, H, S)
    whole, norms = out.unbind(0), nu.unbind(0)
    tops = out[:, :, :H].unbind(0)
    if steps.diag is not None:
        bottoms = out[:, :, H:].unbind(0)
        d, f = (part.unsqueeze(-1).unbind(0) for part in steps.diag)        # L x (B, H, 1)
        x_top, x_bottom = X[:, :H], X[:, H:]
    for i in range(hi - lo - 1, -1, -1):                                     # t = lo + i
        torch.matmul(dense_t[i], X, out=tops[i])
        if steps.diag is not None:
            torch.mul(x_top, d[i], out=bottoms[i])
            bottoms[i].addcmul_(x_bottom, f[i])
            x_top, x_bottom = tops[i], bottoms[i]
        torch.linalg.vector_norm(whole[i], dim=(-2, -1), keepdim=True, out=norms[i])
        X = whole[i].div_(norms[i].clamp_min(tiny))


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------

def step_jacobians(model, input: Tensor, hx=None) -> Tensor:
    r"""All step Jacobians :math:`J_t = \partial s_t / \partial s_{t-1}`, t = 1..T.

    Returns:
        ``(T, B, S, S)`` with ``[t-1]`` = :math:`J_t` (``(T, S, S)`` for unbatched input).
    """
    with torch.no_grad():
        run = _Trajectory(model, input, hx)
        return run.batched(run.steps(0, run.T).full(), 1)


def state_jacobians(model, input: Tensor, hx=None) -> Tensor:
    r"""All products :math:`\partial s_T / \partial s_t = J_T J_{T-1} \cdots J_{t+1}`, t = 0..T.

    Accumulated backwards from :math:`\partial s_T/\partial s_T = I` by
    :math:`\partial s_T/\partial s_t = (\partial s_T/\partial s_{t+1})\, J_{t+1}`, one batched
    matmul per step. The plain product under/overflows on long sequences; see
    :func:`jacobian_log_norms` for its size at any length.

    Returns:
        ``(T+1, B, S, S)`` with ``[t]`` = :math:`\partial s_T/\partial s_t` and ``[T]`` = I.
    """
    with torch.no_grad():
        run = _Trajectory(model, input, hx)
        J = run.steps(0, run.T).full()                                       # (T, B, S, S)
        out = J.new_empty((run.T + 1, run.B, run.S, run.S))
        out[run.T] = torch.eye(run.S, dtype=J.dtype, device=J.device)
        for t in range(run.T - 1, -1, -1):
            torch.matmul(out[t + 1], J[t], out=out[t])
        return run.batched(out, 1)


def jacobian_log_norms(model, input: Tensor, hx=None) -> Tensor:
    r"""Natural log of the spectral norm :math:`\log \lVert \partial s_T/\partial s_t \rVert_2`.

    The product :math:`P_t = \partial s_T/\partial s_t` is kept as :math:`P_t = \lambda_t\,
    Q\, X_t^\top` with a running log-scale :math:`\log\lambda_t`, a unit-Frobenius-norm
    :math:`X_t` (S, r) and a Q with orthonormal columns that never needs to be formed:
    :math:`\lVert P_t\rVert_2 = \lambda_t \lVert X_t\rVert_2`. From :math:`X_T = I/\sqrt S`,
    :math:`\lambda_T = \sqrt S`, each step is :math:`\tilde X_t = J_{t+1}^\top X_{t+1}`,
    :math:`\nu_t = \lVert\tilde X_t\rVert_F`, :math:`X_t = \tilde X_t/\nu_t`,
    :math:`\lambda_t = \lambda_{t+1}\nu_t`, and :math:`\lVert X_t\rVert_2^2` is the largest
    eigenvalue of the r x r matrix :math:`X_t^\top X_t` (LAPACK's ``eigvalsh``).

    Long products are numerically of low rank: every ``_CHUNK`` steps :math:`X = V\Sigma U^\top`
    (SVD) is replaced by :math:`V_{r}\Sigma_{r}`, its leading r columns, r the fewest whose
    dropped tail has Frobenius norm at most ε·σ₁ (ε the dtype's epsilon: a relative change of
    the product no larger than one rounding of the full one). Q absorbs U, so the columns of
    :math:`X` stay the product's principal directions; r falls from S to a few once the lag
    exceeds a few hundred steps, and a step then costs an (H, S) @ (S, r) product. (Where the
    product keeps many equal singular values, as an identity-initialised relu RNN's does, r
    stays large and so does the cost: an S x S eigenvalue problem per step.)

    The result is finite where the plain product under- or overflows and :math:`-\infty` only
    where the product is exactly zero (e.g. every relu unit dead at a step).

    Returns:
        ``(T+1, B)`` (``(T+1,)`` for unbatched input); ``[T]`` = 0.
    """
    with torch.no_grad():
        run = _Trajectory(model, input, hx)
        T, B, S = run.T, run.B, run.S
        log_scale = run.w_hh.new_zeros((T + 1, B))                           # log ν_t
        log_top = run.w_hh.new_zeros((T + 1, B))                             # log ‖X_t‖₂
        X = torch.eye(S, dtype=run.w_hh.dtype, device=run.w_hh.device).expand(B, S, S)
        X = X / math.sqrt(S)
        log_scale[T] = 0.5 * math.log(S)
        log_top[T] = -0.5 * math.log(S)
        for hi in range(T, 0, -_CHUNK):
            lo = max(hi - _CHUNK, 0)
            Xs = X.new_empty((hi - lo, B, S, X.shape[-1]))
            nu = X.new_empty((hi - lo, B, 1, 1))
            _backward_products(run, lo, hi, X, Xs, nu)
            log_scale[lo:hi] = nu[:, :, 0, 0].log()
            top = torch.linalg.eigvalsh(Xs.mT @ Xs)[..., -1]                 # (L, B): r x r Grams
            log_top[lo:hi] = 0.5 * top.clamp_min(0).log()
            X = _compressed(Xs[0])
        return run.batched(log_scale.flip(0).cumsum(0).flip(0) + log_top, 1)


def _compressed(X: Tensor) -> Tensor:
    r""":math:`V_r \Sigma_r` of :math:`X = V \Sigma U^\top` (B, S, r'), with the fewest columns r
    whose dropped singular values have a Frobenius norm of at most ε·σ₁ in every batch entry
    (at least one column)."""
    V, sigma, _ = torch.linalg.svd(X, full_matrices=False)                  # σ descending
    tail = sigma.flip(-1).square().cumsum(-1).flip(-1).sqrt()                # ‖σ_{j:}‖
    needed = (tail > torch.finfo(X.dtype).eps * sigma[:, :1]).sum(-1)       # (B,)
    r = max(int(needed.max()), 1)
    return V[..., :r] * sigma[:, None, :r]


def lyapunov_exponents(model, input: Tensor, hx=None, k: int | None = None) -> Tensor:
    r"""The ``k`` largest Lyapunov exponents of the state dynamics along this trajectory.

    :func:`qr_exponents` of the closed-form step Jacobians :math:`J_1, \dots, J_T`, natural log
    per step, sorted descending. For a constant :math:`J_t = A` they are
    :math:`\log|\mathrm{eig}(A)|`; a direction the steps map to zero gives :math:`-\infty` or,
    through rounding, a very negative number. The result does not depend on the global RNG.

    Args:
        k: how many exponents, ``1 <= k <= S``; all ``S`` when ``None``.

    Returns:
        ``(B, k)`` (``(k,)`` for unbatched input).
    """
    with torch.no_grad():
        run = _Trajectory(model, input, hx)
        products = (J_t.matmul for lo in range(0, run.T, _CHUNK)
                    for J_t in run.steps(lo, min(lo + _CHUNK, run.T)).full())
        return run.batched(qr_exponents(products, run.S, k, run.w_hh), 0)


def qr_exponents(products: Iterable[Callable[[Tensor], Tensor]], size: int,
                 k: int | None, like: Tensor) -> Tensor:
    r"""The QR method (Benettin et al. 1980) for the ``k`` largest Lyapunov exponents.

    ``products`` yields, for t = 1..T in order, a function :math:`Q \mapsto J_t Q` that
    maps an ``(S, k)`` or ``(B, S, k)`` basis to ``(B, S, k)`` (``S = size``). From
    :math:`Q_0`, a fixed random orthonormal ``S x k`` basis (seeded: generic, so that no
    invariant subspace hides a larger exponent, and the same for every caller),

    .. math::
        J_t Q_{t-1} = Q_t R_t \quad (R_t \text{ upper triangular}), \qquad
        \lambda_i = \frac1T \sum_{t=1}^{T} \log\lvert (R_t)_{ii}\rvert .

    Every operation is differentiable (``torch.linalg.qr`` of a tall matrix of full
    rank), so under autograd :math:`\lambda_i` has a gradient with respect to whatever
    the products depend on (:func:`rnnlab.flossing.lyapunov_exponents`); under
    ``no_grad`` no graph is kept (:func:`lyapunov_exponents`). ``k``: ``1 <= k <= S``,
    all ``S`` when None. ``like``: :math:`Q_0`'s dtype and device.

    Returns:
        ``(B, k)``, natural log per step, sorted descending in each row.
    """
    if k is None:
        k = size
    check_int("k", k)
    if not 1 <= k <= size:
        raise ValueError(f"k: expected None or an int in [1, S={size}], got {k}")
    start = torch.randn(size, k, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    Q = torch.linalg.qr(start).Q.to(like)                            # (S, k)
    total, steps = 0, 0
    for product in products:
        Q, R = torch.linalg.qr(product(Q))                           # (B, S, k)
        total = total + R.diagonal(dim1=-2, dim2=-1).abs().log()     # log|(R_t)_ii|
        steps += 1
    return (total / steps).sort(dim=-1, descending=True).values
