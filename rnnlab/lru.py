r"""The linear recurrent unit (LRU): a recurrence whose Jacobian product is a diagonal power.

Orvieto et al. (2023) keep the nonlinearity out of the recurrence. With a complex state
:math:`x_t \in \mathbb{C}^N` (``N = hidden_size``) and a real input :math:`u_t \in \mathbb{R}^I`,

.. math::
    x_t = \operatorname{diag}(\lambda)\, x_{t-1} + \gamma \odot (B u_t), \qquad
    y_t = \operatorname{Re}(C x_t) + D \odot u_t, \qquad
    \lambda_j = \exp\!\big(-e^{\nu_j} + i\, e^{\theta_j}\big), \qquad
    \gamma_j = e^{\delta_j},

so that :math:`\lvert\lambda_j\rvert = \exp(-e^{\nu_j}) < 1` for every real :math:`\nu_j`: the
eigenvalues stay inside the unit disc whatever the optimiser does to :math:`\nu`. The
normalisation :math:`\gamma_j` starts at :math:`\sqrt{1 - \lvert\lambda_j\rvert^2}`, which keeps
the stationary variance of :math:`x_{t,j}` equal to that of :math:`(B u_t)_j` for white input.
:math:`B \in \mathbb{C}^{N\times I}`, :math:`C \in \mathbb{C}^{I\times N}`,
:math:`D \in \mathbb{R}^{I}`: the output has the input's width, as in the paper, where a
position-wise MLP and a residual connection follow the unit.

Because the recurrence is linear and diagonal, the state Jacobian does not depend on the input:

.. math::
    \frac{\partial x_T}{\partial x_t} = \operatorname{diag}(\lambda)^{T-t}, \qquad
    \Big\lVert \frac{\partial x_T}{\partial x_t} \Big\rVert_2
    = \max_j \lvert\lambda_j\rvert^{T-t}
    = \exp\!\big(-(T-t) \min_j e^{\nu_j}\big)

(the norm of the real map on :math:`\mathbb{R}^{2N}` that the complex one is; each mode is a
rotation by :math:`\arg\lambda_j` scaled by :math:`\lvert\lambda_j\rvert`). :func:`scan` runs the
recurrence as an associative (parallel-prefix) scan in :math:`\lceil\log_2 T\rceil` rounds.

Shapes: ``T`` time, ``B`` batch, ``I`` input_size, ``N`` hidden_size (the number of complex
modes). Input ``(T, B, I)``, ``(B, T, I)`` when ``batch_first``, or unbatched ``(T, I)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rnnlab.checks import check_bool, check_int, check_like, check_number, check_tensor, check_type

__all__ = ["scan", "LRU"]


def scan(lambdas: Tensor, inputs: Tensor, h0: Tensor | None = None) -> Tensor:
    r"""All states of :math:`x_t = \lambda_t \odot x_{t-1} + b_t`, t = 1..T, by a parallel scan.

    ``inputs``: the drive :math:`b_t`, shape ``(T, *S)`` (real or complex); ``lambdas``: the
    diagonal, broadcastable to ``inputs`` (``(N,)`` for a time-invariant unit, ``(T, *S)`` for a
    time-varying one); ``h0``: :math:`x_0`, broadcastable to ``S`` (zeros when None).
    Returns ``(T, *S)``, row ``t-1`` holding :math:`x_t`.

    The pairs :math:`(a, b)` compose as :math:`(a_1, b_1) \bullet (a_2, b_2) = (a_1 a_2,\,
    a_2 b_1 + b_2)`, which is associative; after the round with offset :math:`d` row t holds
    the composition of the :math:`2d` steps ending at t (Hillis-Steele). Work
    :math:`O(T \log T)`, depth :math:`\lceil\log_2 T\rceil`, differentiable by autograd.
    """
    check_tensor("lambdas", lambdas)
    check_tensor("inputs", inputs)
    if inputs.dim() < 1 or inputs.shape[0] < 1:
        raise ValueError(f"inputs: expected shape (T, ...) with T >= 1, "
                         f"got {tuple(inputs.shape)}")
    try:
        a = torch.broadcast_to(lambdas, inputs.shape)
    except RuntimeError:
        raise ValueError(f"lambdas: expected a shape broadcastable to inputs "
                         f"{tuple(inputs.shape)}, got {tuple(lambdas.shape)}") from None
    b = inputs
    if h0 is not None:
        check_type("h0", h0, Tensor, "a torch.Tensor or None")
        try:
            first = a[0] * h0 + b[0]                             # x_1 = λ_1 x_0 + b_1
        except RuntimeError:
            raise ValueError(f"h0: expected a shape broadcastable to {tuple(inputs.shape[1:])}"
                             f", got {tuple(h0.shape)}") from None
        b = torch.cat((first.expand(inputs.shape[1:]).unsqueeze(0), b[1:]))
    return _compose_prefixes(a, b)


def _compose_prefixes(a: Tensor, b: Tensor) -> Tensor:
    """x_t = a_t x_{t-1} + b_t from x_0 = 0, all t at once; a, b: (T, ...), row t-1."""
    T, offset = b.shape[0], 1
    while offset < T:         # then row t composes the 2 * offset steps ending at t
        b = torch.cat((b[:offset], a[offset:] * b[:-offset] + b[offset:]))
        a = torch.cat((a[:offset], a[offset:] * a[:-offset]))
        offset *= 2
    return b


class LRU(nn.Module):
    r"""A linear recurrent unit (module docstring) with the paper's ring initialisation.

    Args:
        input_size: ``I``, the width of :math:`u_t` and of :math:`y_t`.
        hidden_size: ``N``, the number of complex modes of :math:`x_t`.
        r_min, r_max: :math:`\lvert\lambda_j\rvert` is drawn so that :math:`\lambda` is uniform
            on the ring :math:`r_{\min} \le \lvert\lambda\rvert \le r_{\max}` (uniform in area:
            :math:`\lvert\lambda\rvert^2 \sim U(r_{\min}^2, r_{\max}^2)`),
            ``0 <= r_min < r_max <= 1``.
        max_phase: :math:`\arg\lambda_j \sim U(0, \text{max\_phase})`, ``0 < max_phase <= 2π``.
        batch_first: input and output as ``(B, T, I)``.

    Parameters: ``nu_log`` :math:`\nu`, ``theta_log`` :math:`\theta`, ``gamma_log``
    :math:`\delta` (each ``(N,)``), ``B_re``/``B_im`` ``(N, I)`` with entries
    :math:`\mathcal N(0, 1/(2I))`, ``C_re``/``C_im`` ``(I, N)`` with entries
    :math:`\mathcal N(0, 1/N)`, ``D`` ``(I,)`` with entries :math:`\mathcal N(0, 1)`.
    """

    def __init__(self, input_size: int, hidden_size: int, *, r_min: float = 0.0,
                 r_max: float = 1.0, max_phase: float = 2 * math.pi, batch_first: bool = False,
                 device=None, dtype=None) -> None:
        super().__init__()
        check_int("input_size", input_size, minimum=1)
        check_int("hidden_size", hidden_size, minimum=1)
        r_min = check_number("r_min", r_min, minimum=0, maximum=1)
        r_max = check_number("r_max", r_max, minimum=0, maximum=1)
        max_phase = check_number("max_phase", max_phase, positive=True, maximum=2 * math.pi)
        check_bool("batch_first", batch_first)
        if not r_min < r_max:
            raise ValueError(f"r_min, r_max: expected 0 <= r_min < r_max <= 1, "
                             f"got {r_min!r}, {r_max!r}")
        self.input_size, self.hidden_size, self.batch_first = input_size, hidden_size, batch_first
        kw = {"device": device, "dtype": dtype}
        u1 = torch.rand(hidden_size, **kw)
        u2 = torch.rand(hidden_size, **kw)
        modulus_sq = u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2             # |λ|² on the ring
        # |λ|² = exp(-2 e^ν)  =>  ν = log(-log|λ|² / 2); u1 = 0 at r_min = 0 gives |λ| = 0
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(modulus_sq)))
        self.theta_log = nn.Parameter(torch.log(max_phase * u2))
        self.gamma_log = nn.Parameter(0.5 * torch.log1p(-modulus_sq))        # √(1 - |λ|²)
        self.B_re = nn.Parameter(torch.randn(hidden_size, input_size, **kw)
                                 / math.sqrt(2 * input_size))
        self.B_im = nn.Parameter(torch.randn(hidden_size, input_size, **kw)
                                 / math.sqrt(2 * input_size))
        self.C_re = nn.Parameter(torch.randn(input_size, hidden_size, **kw)
                                 / math.sqrt(hidden_size))
        self.C_im = nn.Parameter(torch.randn(input_size, hidden_size, **kw)
                                 / math.sqrt(hidden_size))
        self.D = nn.Parameter(torch.randn(input_size, **kw))

    def log_modulus(self) -> Tensor:
        r""":math:`\log\lvert\lambda_j\rvert = -e^{\nu_j}`, ``(N,)``: negative, and exact where
        :math:`\lvert\lambda_j\rvert` itself would round to 1."""
        return -torch.exp(self.nu_log)

    def eigenvalues(self) -> Tensor:
        r""":math:`\lambda_j = \exp(-e^{\nu_j} + i e^{\theta_j})`, complex ``(N,)``."""
        return torch.exp(torch.complex(self.log_modulus(), torch.exp(self.theta_log)))

    def forward(self, input: Tensor, hx: Tensor | None = None, *,
                return_states: bool = False):
        """``(output, h_n)``: :math:`y_1..y_T` like ``input`` and :math:`x_T` ``(B, N)``
        (complex; ``(N,)`` unbatched). ``hx``: :math:`x_0`, ``(B, N)`` real or complex, zeros
        when None. With ``return_states=True`` also the states :math:`x_0..x_T`,
        ``(T+1, B, N)`` (``(T+1, N)`` unbatched), the tensors the recurrence consumed."""
        u = self._time_major(input)                                           # (T, B, I)
        B = torch.complex(self.B_re, self.B_im)
        C = torch.complex(self.C_re, self.C_im)
        drive = torch.exp(self.gamma_log) * (u.to(B.dtype) @ B.T)              # (T, B, N)
        x0 = self._initial_state(hx, u.shape[1], drive.dtype)                  # (B, N)
        x = scan(self.eigenvalues(), drive, x0)                                # (T, B, N)
        y = (x @ C.T).real + self.D * u                                        # (T, B, I)
        if input.dim() == 2:
            y, x, x0 = y[:, 0], x[:, 0], x0[0]
        elif self.batch_first:
            y = y.transpose(0, 1)
        out = (y, x[-1])
        return (*out, torch.cat((x0.unsqueeze(0), x))) if return_states else out

    def state_jacobians(self, seq_len: int) -> Tensor:
        r""":math:`\partial x_T/\partial x_t` for t = 0..T as real maps of
        :math:`\mathbb{R}^{2N}` (coordinates :math:`\operatorname{Re} x` then
        :math:`\operatorname{Im} x`): ``(T+1, 2N, 2N)``, ``[t]`` the power
        :math:`\operatorname{diag}(\lambda)^{T-t}` written as
        :math:`\begin{pmatrix}\operatorname{Re} & -\operatorname{Im}\\ \operatorname{Im} &
        \operatorname{Re}\end{pmatrix}` blocks. Independent of the input."""
        T = check_int("seq_len", seq_len, minimum=1)
        lags = torch.arange(T, -1, -1, device=self.nu_log.device)            # T - t
        power = self.eigenvalues().unsqueeze(0) ** lags.unsqueeze(1)          # (T+1, N)
        re, im = torch.diag_embed(power.real), torch.diag_embed(power.imag)
        return torch.cat((torch.cat((re, -im), -1), torch.cat((im, re), -1)), -2)

    def jacobian_log_norms(self, seq_len: int) -> Tensor:
        r""":math:`\log\lVert\partial x_T/\partial x_t\rVert_2 = (T-t)\max_j\log\lvert\lambda_j
        \rvert` for t = 0..T, ``(T+1,)``; ``[T] = 0``. Like
        :func:`rnnlab.jacobians.jacobian_log_norms`, finite at any length."""
        T = check_int("seq_len", seq_len, minimum=1)
        lags = torch.arange(T, -1, -1, device=self.nu_log.device)
        return lags * self.log_modulus().max()

    def _time_major(self, input) -> Tensor:
        check_tensor("input", input)
        if input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(f"input: expected (T, B, {self.input_size}), (B, T, "
                             f"{self.input_size}) when batch_first, or unbatched (T, "
                             f"{self.input_size}), got shape {tuple(input.shape)}")
        check_like("input", input, "the parameters", self.D)
        if input.dim() == 2:
            return input.unsqueeze(1)
        return input.transpose(0, 1) if self.batch_first else input

    def _initial_state(self, hx, batch: int, dtype) -> Tensor:
        if hx is None:
            return torch.zeros(batch, self.hidden_size, dtype=dtype, device=self.D.device)
        check_type("hx", hx, Tensor, "a torch.Tensor or None")
        if hx.shape[-1] != self.hidden_size or hx.dim() not in (1, 2) \
                or (hx.dim() == 2 and hx.shape[0] != batch):
            raise ValueError(f"hx: expected shape ({batch}, {self.hidden_size}) (unbatched "
                             f"({self.hidden_size},)), got {tuple(hx.shape)}")
        return hx.to(dtype).reshape(batch, self.hidden_size)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}"
                + (", batch_first=True" if self.batch_first else ""))
