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
format: ``h0`` of shape ``(1, B, H)`` (unbatched ``(1, H)``), ``(h0, c0)`` for the LSTM; zeros
when ``None``. Results are on the model's device, in its dtype, and detached from autograd.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnlab.cells import gru_step, lstm_step, rnn_step

__all__ = ["step_jacobians", "state_jacobians", "jacobian_log_norms", "lyapunov_exponents"]

_SUPPORTED = ("a single-layer unidirectional torch.nn.RNN/LSTM/GRU (or a subclass) without "
              "proj_size: num_layers=1, bidirectional=False, proj_size=0")
_CHUNK = 256            # time steps of step Jacobians held in memory at once by the long loops


# --------------------------------------------------------------------------------------------
# Arguments and the state trajectory
# --------------------------------------------------------------------------------------------

class _Run:
    """The weights, the input projections and the states s_0..s_T of one model on one input."""

    def __init__(self, model, input: Tensor, hx) -> None:
        if not isinstance(model, (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)):
            raise TypeError(f"model: expected {_SUPPORTED}, got {type(model).__name__}")
        for name, value, ok in (("num_layers", model.num_layers, 1),
                                ("bidirectional", model.bidirectional, False),
                                ("proj_size", getattr(model, "proj_size", 0), 0)):
            if value != ok:
                raise ValueError(f"model: expected {_SUPPORTED}, got {name}={value}")
        self.mode = model.mode                      # RNN_TANH, RNN_RELU, LSTM, GRU
        self.w_ih = model.weight_ih_l0.detach()
        self.w_hh = model.weight_hh_l0.detach()
        self.b_ih = _detached(getattr(model, "bias_ih_l0", None))
        self.b_hh = _detached(getattr(model, "bias_hh_l0", None))
        self.H = H = model.hidden_size
        self.S = 2 * H if self.mode == "LSTM" else H
        x = self._input(input, model.batch_first)                            # (T, B, I)
        h, c = self._hx(hx, x.shape[1])                                      # (B, H) each
        self.gi = torch.nn.functional.linear(x, self.w_ih, self.b_ih)       # (T, B, G*H)
        hs, cs = [h], [c]
        for gi_t in self.gi:
            if self.mode == "LSTM":
                h, c = lstm_step(gi_t, h, c, self.w_hh, self.b_hh)
                cs.append(c)
            elif self.mode == "GRU":
                h = gru_step(gi_t, h, self.w_hh, self.b_hh)
            else:
                h = rnn_step(gi_t, h, self.w_hh, self.b_hh, self.mode[4:].lower())
            hs.append(h)
        self.h = torch.stack(hs)                                             # (T+1, B, H)
        self.c = torch.stack(cs) if self.mode == "LSTM" else None           # (T+1, B, H)
        self.T, self.B = x.shape[:2]

    def _input(self, input, batch_first: bool) -> Tensor:
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected a torch.Tensor, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError("input: expected (T, B, I), (B, T, I) when batch_first, or "
                             f"unbatched (T, I), got shape {tuple(input.shape)}")
        if input.shape[-1] != self.w_ih.shape[1]:
            raise ValueError(f"input: expected last dimension input_size={self.w_ih.shape[1]}, "
                             f"got shape {tuple(input.shape)}")
        if input.dtype != self.w_ih.dtype or input.device != self.w_ih.device:
            raise TypeError(f"input: expected dtype {self.w_ih.dtype} on {self.w_ih.device} "
                            f"like the model, got {input.dtype} on {input.device}")
        self.unbatched = input.dim() == 2
        if self.unbatched:
            return input.detach().unsqueeze(1)
        return input.detach().transpose(0, 1) if batch_first else input.detach()

    def _hx(self, hx, batch: int) -> tuple[Tensor, Tensor]:
        expected = (1, self.H) if self.unbatched else (1, batch, self.H)
        names = ("hx[0]", "hx[1]") if self.mode == "LSTM" else ("hx",)
        if hx is None:
            zeros = self.w_ih.new_zeros((batch, self.H))
            return zeros, zeros
        if self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: expected a tuple (h0, c0) or None, got {type(hx).__name__}")
            parts = tuple(hx)
        else:
            parts = (hx,)
        for name, part in zip(names, parts):
            if not isinstance(part, Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(part).__name__}")
            if tuple(part.shape) != expected:
                raise ValueError(f"{name}: expected shape {expected} (num_layers=1), got "
                                 f"{tuple(part.shape)}")
            if part.dtype != self.w_ih.dtype or part.device != self.w_ih.device:
                raise TypeError(f"{name}: expected dtype {self.w_ih.dtype} on "
                                f"{self.w_ih.device} like the model, got {part.dtype} on "
                                f"{part.device}")
        h = parts[0].detach().reshape(batch, self.H)
        c = parts[-1].detach().reshape(batch, self.H) if self.mode == "LSTM" else h
        return h, c

    def jacobians(self, lo: int, hi: int) -> Tensor:
        """J_t = ∂s_t/∂s_{t-1} for t = lo+1..hi in closed form (module docstring).

        Returns ``(hi-lo, B, S, S)``; gate activations are recomputed from s_{t-1} here, batched.
        """
        h_prev = self.h[lo:hi]                                               # (L, B, H)
        gh = torch.nn.functional.linear(h_prev, self.w_hh, self.b_hh)       # (L, B, G*H)
        if self.mode in ("RNN_TANH", "RNN_RELU"):
            h = self.h[lo + 1:hi + 1]
            d = 1 - h * h if self.mode == "RNN_TANH" else (h > 0).to(h.dtype)
            return d.unsqueeze(-1) * self.w_hh                               # (L, B, H, H)
        if self.mode == "LSTM":
            i, f, g, o = (self.gi[lo:hi] + gh).chunk(4, dim=-1)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            tc = self.c[lo + 1:hi + 1].tanh()
            k_c = (g * i * (1 - i), self.c[lo:hi] * f * (1 - f), i * (1 - g * g))
            dc_dh = _diag_sum(k_c, self.w_hh[:3 * self.H])                  # (L, B, H, H)
            do = o * (1 - tc * tc)                                           # ∂h_t/∂c_t
            dh_dh = _diag_sum((tc * o * (1 - o),), self.w_hh[3 * self.H:]) \
                + do.unsqueeze(-1) * dc_dh
            top = torch.cat((dh_dh, torch.diag_embed(do * f)), dim=-1)
            bottom = torch.cat((dc_dh, torch.diag_embed(f)), dim=-1)
            return torch.cat((top, bottom), dim=-2)                          # (L, B, 2H, 2H)
        i_r, i_z, i_n = self.gi[lo:hi].chunk(3, dim=-1)
        h_r, h_z, m = gh.chunk(3, dim=-1)
        r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
        n = (i_n + r * m).tanh()
        dn = (1 - z) * (1 - n * n)                                           # ∂h_t/∂(pre-act of n)
        k = (dn * m * r * (1 - r), (h_prev - n) * z * (1 - z), dn * r)
        return _diag_sum(k, self.w_hh) + torch.diag_embed(z)                 # (L, B, H, H)

    def batched(self, result: Tensor, dim: int) -> Tensor:
        """Drop the batch dimension ``dim`` of a result for unbatched input."""
        return result.squeeze(dim) if self.unbatched else result


def _detached(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


def _diag_sum(coefficients: tuple[Tensor, ...], weight: Tensor) -> Tensor:
    """Σ_g diag(k_g) W_g for coefficients k_g (L, B, H) and W = [W_1; ...; W_G] (G*H, H)."""
    k = torch.cat(coefficients, dim=-1)                                      # (L, B, G*H)
    L, B, GH = k.shape
    H = weight.shape[1]
    return (k.unsqueeze(-1) * weight).reshape(L, B, GH // H, H, H).sum(2)   # (L, B, H, H)


def _top_eigenvalue(Ms: Tensor, u: Tensor, iterations: int = 3) -> tuple[Tensor, Tensor]:
    r"""λ_max(M Mᵀ) of each unit-Frobenius M in ``Ms`` (L, B, S, S), and a warm start for the next.

    A few power steps from ``u`` (B, S) give a unit u with ρ = ‖Mᵀu‖² ≤ λ_max. Writing G = M Mᵀ
    in the basis (u, u^⊥), the Schur complement bounds λ_max ≤ ρ + ‖Gu − ρu‖²/(ρ − tr C) with
    tr C = tr G − ρ = 1 − ρ, valid when ρ > 1 − ρ. Where that bound certifies ρ to a few ulps
    it is the answer; elsewhere (flat spectra, short lags) LAPACK's ``eigvalsh`` is used.
    """
    u = u.expand(Ms.shape[:-1])                                              # (L, B, S)
    for _ in range(iterations):
        u = (Ms @ (Ms.mT @ u.unsqueeze(-1))).squeeze(-1)
        u = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(
            torch.finfo(u.dtype).tiny)
    v = (Ms.mT @ u.unsqueeze(-1)).squeeze(-1)                                # Mᵀu
    rho = (v * v).sum(-1)                                                    # (L, B)
    residual = (Ms @ v.unsqueeze(-1)).squeeze(-1) - rho.unsqueeze(-1) * u
    gap = 2 * rho - 1
    bound = (residual * residual).sum(-1) / gap.clamp_min(torch.finfo(u.dtype).tiny)
    uncertain = (gap <= 0.1) | (bound > 8 * torch.finfo(u.dtype).eps * rho)
    if uncertain.any():
        rho[uncertain] = torch.linalg.eigvalsh(Ms[uncertain] @ Ms[uncertain].mT)[..., -1]
    return rho, u[0]


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------

def step_jacobians(model, input: Tensor, hx=None) -> Tensor:
    r"""All step Jacobians :math:`J_t = \partial s_t / \partial s_{t-1}`, t = 1..T.

    Returns:
        ``(T, B, S, S)`` with ``[t-1]`` = :math:`J_t` (``(T, S, S)`` for unbatched input).
    """
    with torch.no_grad():
        run = _Run(model, input, hx)
        return run.batched(run.jacobians(0, run.T), 1)


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
        run = _Run(model, input, hx)
        J = run.jacobians(0, run.T)                                          # (T, B, S, S)
        out = J.new_empty((run.T + 1, run.B, run.S, run.S))
        out[run.T] = torch.eye(run.S, dtype=J.dtype, device=J.device)
        for t in range(run.T - 1, -1, -1):
            torch.matmul(out[t + 1], J[t], out=out[t])
        return run.batched(out, 1)


def jacobian_log_norms(model, input: Tensor, hx=None) -> Tensor:
    r"""Natural log of the spectral norm :math:`\log \lVert \partial s_T/\partial s_t \rVert_2`.

    The product is kept as a unit-Frobenius-norm matrix times a running log-scale:
    :math:`M_T = I`, :math:`\tilde M_t = M_{t+1} J_{t+1}`, :math:`\nu_t = \lVert\tilde M_t\rVert_F`,
    :math:`M_t = \tilde M_t / \nu_t`, so that
    :math:`\log\lVert\partial s_T/\partial s_t\rVert_2 = \sum_{k=t}^{T-1}\log\nu_k
    + \log\lVert M_t\rVert_2`, where :math:`\lVert M_t\rVert_2^2` is the largest eigenvalue of
    :math:`M_t M_t^\top`. The result is finite where the plain product under- or overflows and
    :math:`-\infty` only where the product is exactly zero (e.g. every relu unit dead at a step).

    Returns:
        ``(T+1, B)`` (``(T+1,)`` for unbatched input); ``[T]`` = 0.
    """
    with torch.no_grad():
        run = _Run(model, input, hx)
        T = run.T
        log_scale = run.w_hh.new_zeros((T + 1, run.B))                       # log ν_t
        log_top = run.w_hh.new_zeros((T + 1, run.B))                         # log ‖M_t‖₂
        M = torch.eye(run.S, dtype=run.w_hh.dtype, device=run.w_hh.device).expand(
            run.B, run.S, run.S) / math.sqrt(run.S)
        log_scale[T] = 0.5 * math.log(run.S)
        u = M[:, :, 0]                                                       # (B, S)
        for hi in range(T, 0, -_CHUNK):
            lo = max(hi - _CHUNK, 0)
            J = run.jacobians(lo, hi)                                        # (L, B, S, S)
            Ms = J.new_empty(J.shape)
            for t in range(hi - 1, lo - 1, -1):
                M = M @ J[t - lo]
                nu = torch.linalg.matrix_norm(M).unsqueeze(-1).unsqueeze(-1)  # (B, 1, 1)
                log_scale[t] = nu[:, 0, 0].log()
                M = M / torch.where(nu > 0, nu, 1)
                Ms[t - lo] = M
            top, u = _top_eigenvalue(Ms, u)                                  # (L, B)
            log_top[lo:hi] = 0.5 * top.clamp_min(0).log()
        log_top[T] = -0.5 * math.log(run.S)
        return run.batched(log_scale.flip(0).cumsum(0).flip(0) + log_top, 1)


def lyapunov_exponents(model, input: Tensor, hx=None, k: int | None = None) -> Tensor:
    r"""The ``k`` largest Lyapunov exponents of the state dynamics along this trajectory.

    QR method (Benettin et al. 1980): :math:`Q_0` a fixed random orthonormal ``S x k`` basis
    (generic, so no invariant subspace hides a larger exponent); for t = 1..T,
    :math:`J_t Q_{t-1} = Q_t R_t` (QR, :math:`R_t` upper triangular) and
    :math:`\lambda_i = \frac1T \sum_{t=1}^{T} \log |(R_t)_{ii}|`, natural log per step, sorted
    descending. For a constant :math:`J_t = A` they are :math:`\log|\mathrm{eig}(A)|`; a direction
    the steps map to zero gives :math:`-\infty` or, through rounding, a very negative number.
    The result does not depend on the global RNG.

    Args:
        k: how many exponents, ``1 <= k <= S``; all ``S`` when ``None``.

    Returns:
        ``(B, k)`` (``(k,)`` for unbatched input).
    """
    with torch.no_grad():
        run = _Run(model, input, hx)
        if k is None:
            k = run.S
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= run.S:
            raise ValueError(f"k: expected None or an int in [1, S={run.S}], got {k!r}")
        if run.T < 1:
            raise ValueError(f"input: expected at least one time step, got shape "
                             f"{tuple(input.shape)}")
        start = torch.randn(run.S, k, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
        Q = torch.linalg.qr(start).Q.to(run.w_hh).expand(run.B, run.S, k)     # (B, S, k)
        total = run.w_hh.new_zeros((run.B, k))
        for lo in range(0, run.T, _CHUNK):
            J = run.jacobians(lo, min(lo + _CHUNK, run.T))
            for J_t in J:
                Q, R = torch.linalg.qr(J_t @ Q)
                total += R.diagonal(dim1=-2, dim2=-1).abs().log()
        exponents = (total / run.T).sort(dim=-1, descending=True).values
        return run.batched(exponents, 0)
