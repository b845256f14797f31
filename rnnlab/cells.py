r"""Recurrent cells as pure functions of ``(input, state, weights)``.

Each public cell takes torch's parameter layout (``weight_ih`` stacks the gate blocks
in torch's row order) and returns the next state, equal to ``torch.nn.RNNCell``/
``LSTMCell``/``GRUCell`` with the same weights. The loop over time lives elsewhere
(:mod:`rnnlab.loop`), which calls the ``*_step`` functions below on input projections it
has precomputed for all steps at once.

Legend (torch's names):

* ``B`` batch size (absent for unbatched input), ``I`` input size, ``H`` hidden size,
  ``P`` projection size of an LSTM (``P = H`` without projection).
* :math:`\sigma` the logistic sigmoid, :math:`\odot` the elementwise product.
* input ``(B, I)`` or ``(I,)``; states ``(B, H)`` or ``(H,)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.checks import check_choice, check_like, check_tensor

__all__ = ["rnn_cell", "lstm_cell", "gru_cell", "rnn_step", "lstm_step", "gru_step",
           "NONLINEARITIES"]

NONLINEARITIES = ("tanh", "relu")


# ------------------------------------------------------------------------------------
# Argument checks (shared by the three cells)
# ------------------------------------------------------------------------------------

def _check_cell_args(input: Tensor, states: list[tuple[str, Tensor, int]],
                     weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
                     bias_hh: Tensor | None, gates: int) -> None:
    """Validate the arguments of a cell with ``gates`` blocks of rows in its weights.

    ``states`` lists ``(name, tensor, expected last-dim size)`` for each state tensor.
    """
    check_tensor("input", input, (1, 2), floating=True)
    check_tensor("weight_ih", weight_ih, (2,))
    check_tensor("weight_hh", weight_hh, (2,))
    rows = weight_ih.shape[0]
    if rows % gates:
        raise ValueError(f"weight_ih: expected {gates}*hidden_size rows, got shape "
                         f"{tuple(weight_ih.shape)}")
    if weight_ih.shape[1] != input.shape[-1]:
        raise ValueError(f"weight_ih: expected shape ({rows}, {input.shape[-1]}) to "
                         f"match input_size={input.shape[-1]}, got "
                         f"{tuple(weight_ih.shape)}")
    if weight_hh.shape[0] != rows:
        raise ValueError(f"weight_hh: expected {rows} rows like weight_ih, got shape "
                         f"{tuple(weight_hh.shape)}")
    for name, bias in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if bias is not None:
            check_tensor(name, bias, (1,))
            if bias.shape[0] != rows:
                raise ValueError(f"{name}: expected shape ({rows},), got "
                                 f"{tuple(bias.shape)}")
            check_like(name, bias, "input", input)
    for name, weight in (("weight_ih", weight_ih), ("weight_hh", weight_hh)):
        check_like(name, weight, "input", input)
    for name, state, size in states:
        check_tensor(name, state, (1, 2))
        check_like(name, state, "input", input)
        if state.dim() != input.dim():
            raise ValueError(f"{name}: expected {input.dim()}-D like input "
                             f"(batched iff input is), got shape {tuple(state.shape)}")
        if state.dim() == 2 and state.shape[0] != input.shape[0]:
            raise ValueError(f"{name}: expected batch size {input.shape[0]} like "
                             f"input, got shape {tuple(state.shape)}")
        if state.shape[-1] != size:
            raise ValueError(f"{name}: expected last dimension {size}, got shape "
                             f"{tuple(state.shape)}")


def _project(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``input @ weight.T + bias``: (..., I) -> (..., G*H)."""
    return torch.nn.functional.linear(input, weight, bias)


# ------------------------------------------------------------------------------------
# Steps: the equations, on a precomputed input projection gi = W_ih x_t + b_ih
# ------------------------------------------------------------------------------------

def rnn_step(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None,
             nonlinearity: str = "tanh") -> Tensor:
    r"""One Elman step given the input projection ``gi = W_ih x_t + b_ih``.

    .. math:: h_t = \phi(gi_t + W_{hh} h_{t-1} + b_{hh})

    Shapes: ``gi`` (B, H), ``h`` (B, H) -> (B, H).
    """
    a = torch.addmm(gi, h, weight_hh.t()) if h.dim() == 2 else gi + weight_hh @ h
    if bias_hh is not None:
        a = a + bias_hh
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)


def lstm_step(gi: Tensor, h: Tensor, c: Tensor, weight_hh: Tensor,
              bias_hh: Tensor | None,
              weight_hr: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""One LSTM step given the input projection ``gi = W_ih x_t + b_ih``
    (rows i, f, g, o).

    .. math::
        \begin{aligned}
        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= W_{hr}\,\big(o_t \odot \tanh(c_t)\big)
               \quad (W_{hr} = I \text{ without projection})
        \end{aligned}

    Shapes: ``gi`` (B, 4H), ``h`` (B, P), ``c`` (B, H) -> ``(h, c)`` with (B, P),
    (B, H).
    """
    if h.dim() == 2:
        gates = torch.addmm(gi, h, weight_hh.t())
    else:
        gates = gi + weight_hh @ h
    if bias_hh is not None:
        gates = gates + bias_hh
    i, f, g, o = gates.chunk(4, dim=-1)                        # each (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    if weight_hr is not None:
        h = h @ weight_hr.t()                                  # (B, P)
    return h, c


def gru_step(gi: Tensor, h: Tensor, weight_hh: Tensor,
             bias_hh: Tensor | None) -> Tensor:
    r"""One GRU step given the input projection ``gi = W_ih x_t + b_ih``
    (rows r, z, n).

    .. math::
        \begin{aligned}
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t &= \tanh\big(W_{in} x_t + b_{in}
                         + r_t \odot (W_{hn} h_{t-1} + b_{hn})\big) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{aligned}

    Shapes: ``gi`` (B, 3H), ``h`` (B, H) -> (B, H).
    """
    gh = torch.nn.functional.linear(h, weight_hh, bias_hh)    # (B, 3H)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)                                     # (1 - z) n + z h


# ------------------------------------------------------------------------------------
# Public cells: torch.nn.*Cell as functions
# ------------------------------------------------------------------------------------

def rnn_cell(input: Tensor, hx: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
             bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
             nonlinearity: str = "tanh") -> Tensor:
    r"""Elman cell, equal to ``torch.nn.RNNCell``.

    .. math:: h' = \phi(W_{ih} x + b_{ih} + W_{hh} h + b_{hh}),
              \quad \phi \in \{\tanh, \mathrm{relu}\}

    Args:
        input: ``(B, I)`` or ``(I,)``.
        hx: ``(B, H)`` or ``(H,)``; zeros when ``None``.
        weight_ih: ``(H, I)``. weight_hh: ``(H, H)``.
        bias_ih, bias_hh: ``(H,)`` or ``None``.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Returns:
        ``h'`` of the shape of ``hx``.
    """
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    hidden_size = _hidden_size(weight_ih, 1)
    hx = _zeros_if_none(hx, input, hidden_size)
    _check_cell_args(input, [("hx", hx, hidden_size)], weight_ih, weight_hh,
                     bias_ih, bias_hh, 1)
    return rnn_step(_project(input, weight_ih, bias_ih), hx, weight_hh, bias_hh,
                    nonlinearity)


def lstm_cell(input: Tensor, hx: tuple[Tensor, Tensor] | None, weight_ih: Tensor,
              weight_hh: Tensor, bias_ih: Tensor | None = None,
              bias_hh: Tensor | None = None,
              weight_hr: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""LSTM cell, equal to ``torch.nn.LSTMCell`` (gate rows i, f, g, o as in torch).

    .. math::
        \begin{aligned}
        (i, f, g, o) &= (\sigma, \sigma, \tanh, \sigma)
                        (W_{ih} x + b_{ih} + W_{hh} h + b_{hh}) \\
        c' &= f \odot c + i \odot g, \qquad h' = W_{hr}\,(o \odot \tanh c')
        \end{aligned}

    Args:
        input: ``(B, I)`` or ``(I,)``.
        hx: ``(h, c)`` with ``h`` ``(B, P)`` and ``c`` ``(B, H)`` (unbatched: no ``B``);
            zeros when ``None``.
        weight_ih: ``(4H, I)``. weight_hh: ``(4H, P)``.
        bias_ih, bias_hh: ``(4H,)`` or ``None``.
        weight_hr: ``(P, H)`` projection of ``torch.nn.LSTM(proj_size=P)``, or ``None``.

    Returns:
        ``(h', c')``.
    """
    hidden_size = _hidden_size(weight_ih, 4)
    out_size = hidden_size
    if weight_hr is not None:
        check_tensor("weight_hr", weight_hr, (2,))
        if weight_hr.shape[1] != hidden_size:
            raise ValueError(f"weight_hr: expected shape (proj_size, {hidden_size}), "
                             f"got {tuple(weight_hr.shape)}")
        out_size = weight_hr.shape[0]
    if hx is None:
        hx = (_zeros_if_none(None, input, out_size),
              _zeros_if_none(None, input, hidden_size))
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"hx: expected a tuple (h, c) or None, got {type(hx).__name__}")
    h, c = hx
    _check_cell_args(input, [("hx[0]", h, out_size), ("hx[1]", c, hidden_size)],
                     weight_ih, weight_hh, bias_ih, bias_hh, 4)
    if weight_hh.shape[1] != out_size:
        raise ValueError(f"weight_hh: expected {out_size} columns, got shape "
                         f"{tuple(weight_hh.shape)}")
    return lstm_step(_project(input, weight_ih, bias_ih), h, c, weight_hh, bias_hh,
                     weight_hr)


def gru_cell(input: Tensor, hx: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
             bias_ih: Tensor | None = None, bias_hh: Tensor | None = None) -> Tensor:
    r"""GRU cell, equal to ``torch.nn.GRUCell`` (gate rows r, z, n as in torch).

    .. math::
        \begin{aligned}
        r &= \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}), \quad
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n &= \tanh\big(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})\big), \quad
        h' = (1 - z) \odot n + z \odot h
        \end{aligned}

    Args:
        input: ``(B, I)`` or ``(I,)``. hx: ``(B, H)`` or ``(H,)``; zeros when ``None``.
        weight_ih: ``(3H, I)``. weight_hh: ``(3H, H)``.
        bias_ih, bias_hh: ``(3H,)`` or ``None``.

    Returns:
        ``h'`` of the shape of ``hx``.
    """
    hidden_size = _hidden_size(weight_ih, 3)
    hx = _zeros_if_none(hx, input, hidden_size)
    _check_cell_args(input, [("hx", hx, hidden_size)], weight_ih, weight_hh,
                     bias_ih, bias_hh, 3)
    return gru_step(_project(input, weight_ih, bias_ih), hx, weight_hh, bias_hh)


def _hidden_size(weight_ih, gates: int) -> int:
    check_tensor("weight_ih", weight_ih, (2,))
    if weight_ih.shape[0] % gates:
        raise ValueError(f"weight_ih: expected {gates}*hidden_size rows, got shape "
                         f"{tuple(weight_ih.shape)}")
    return weight_ih.shape[0] // gates


def _zeros_if_none(hx: Tensor | None, input: Tensor, size: int) -> Tensor:
    if hx is not None:
        return hx
    check_tensor("input", input, (1, 2))
    return input.new_zeros((*input.shape[:-1], size))
