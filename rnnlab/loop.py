r"""The loop over time: any ``torch.nn.RNN``/``LSTM``/``GRU`` run one step at a time.

This is the only loop over time in rnnlab. :func:`unroll` computes what the module's fused
``forward`` computes, with the equations of :mod:`rnnlab.cells`, so that every state is a node of
the autograd graph; :meth:`rnnlab.RNN.unroll` (and LSTM, GRU) call it, :mod:`rnnlab.jacobians`
reads the states it returns, and :mod:`rnnlab.diagnostics` differentiates with respect to them.

For layer :math:`l` and direction :math:`d`, with :math:`x^{(0)}_t = x_t` and
:math:`x^{(l)}_t` the concatenated outputs of layer :math:`l-1`:

.. math::
    G_t = W_{ih} x^{(l)}_t + b_{ih} \quad \text{(all } t \text{ in one matmul)}, \qquad
    s_t = \mathrm{step}(G_t, s_{t-1})  \quad \text{(one matmul with } W_{hh} \text{ per step)}

where ``step`` is :func:`~rnnlab.cells.rnn_step`, :func:`~rnnlab.cells.lstm_step` or
:func:`~rnnlab.cells.gru_step`. The reverse direction runs :math:`t = T, \dots, 1`.

Shapes: ``T`` time, ``B`` batch, ``I`` input_size, ``H`` hidden_size, ``H_out`` = ``proj_size``
if an LSTM has one else ``H``, ``D`` = 2 if bidirectional else 1, ``K = D * num_layers``.

* input: ``(T, B, I)``, or ``(B, T, I)`` when ``batch_first``, or unbatched ``(T, I)``, or a
  :class:`~torch.nn.utils.rnn.PackedSequence`;
* ``hx``: ``(K, B, H_out)`` (unbatched: no ``B``); for LSTM a tuple ``(h_0, c_0)`` with ``c_0``
  of size ``H``; zeros when ``None``;
* output: ``(T, B, D * H_out)`` (batch-first / unbatched / packed like the input);
  ``h_n`` like ``hx``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from rnnlab.cells import gru_step, lstm_step, rnn_step
from rnnlab.checks import check_like, check_type
from rnnlab.layout import (
    check_recurrent,
    directions,
    num_directions,
    state_sizes,
    weights,
)

__all__ = ["unroll", "trajectory", "TimeMajor", "time_major"]


class TimeMajor(NamedTuple):
    """An input in the loop's form: ``data`` ``(T, B, I)`` or unbatched ``(T, I)``."""

    data: Tensor
    lengths: Tensor | None          # (B,) lengths of a PackedSequence, else None
    batched: bool


def time_major(module, input) -> TimeMajor:
    """Check ``input`` against ``module`` and bring it to the time-major :class:`TimeMajor`."""
    if isinstance(input, PackedSequence):
        x, lengths = pad_packed_sequence(input)                # original batch order
        return TimeMajor(_checked(module, x, "input.data"), lengths, True)
    check_type("input", input, Tensor, "a torch.Tensor or PackedSequence")
    if input.dim() not in (2, 3):
        layout = "(B, T, I)" if module.batch_first else "(T, B, I)"
        raise ValueError(f"input: expected {layout} or unbatched (T, I), a 3-D or 2-D tensor, "
                         f"got shape {tuple(input.shape)}")
    batched = input.dim() == 3
    x = input.transpose(0, 1) if batched and module.batch_first else input
    return TimeMajor(_checked(module, x, "input"), None, batched)


def _checked(module, x: Tensor, name: str) -> Tensor:
    if x.shape[0] < 1:
        raise ValueError(f"{name}: expected at least one time step, got shape "
                         f"{tuple(x.shape)} (time-major)")
    if x.shape[-1] != module.input_size:
        raise ValueError(f"{name}: expected last dimension input_size={module.input_size}, "
                         f"got shape {tuple(x.shape)}")
    return check_like(name, x, "the parameters", module.weight_ih_l0)


def _initial_states(module, hx, seq: TimeMajor) -> list[tuple[Tensor, ...]]:
    """Split torch's ``hx`` into one tuple of ``(B, size)`` (or ``(size,)``) states per
    layer and direction."""
    count = module.num_layers * num_directions(module)
    sizes = state_sizes(module)
    batch = (seq.data.shape[1],) if seq.batched else ()
    if hx is None:
        return [tuple(seq.data.new_zeros(*batch, size) for size in sizes)] * count
    if len(sizes) > 1 and (not isinstance(hx, (tuple, list)) or len(hx) != len(sizes)):
        raise TypeError(f"hx: expected a tuple (h_0, c_0) or None, got {type(hx).__name__}")
    parts = (hx,) if len(sizes) == 1 else tuple(hx)
    for k, (part, size) in enumerate(zip(parts, sizes)):
        name = "hx" if len(sizes) == 1 else f"hx[{k}]"
        check_type(name, part, Tensor, "a torch.Tensor")
        if tuple(part.shape) != (count, *batch, size):
            raise ValueError(f"{name}: expected shape {(count, *batch, size)}, got "
                             f"{tuple(part.shape)}")
        check_like(name, part, "input", seq.data)
    return [tuple(part[i] for part in parts) for i in range(count)]


def _step(mode: str, gi: Tensor, state: tuple[Tensor, ...], w) -> tuple[Tensor, ...]:
    """One step of ``mode`` from the input projection ``gi`` (b_hh folded in, except GRU)."""
    if mode == "LSTM":
        h, c = lstm_step(gi, state[0], state[1], w.weight_hh, None, w.weight_hr)
        # c_t is a coordinate of the state s_t = (h_t, c_t): expose a node of its own that only
        # the next step reads, so that its gradient holds h_t fixed (h_t was computed from c)
        return h, (c.view_as(c) if torch.is_grad_enabled() else c)
    if mode == "GRU":
        return (gru_step(gi, state[0], w.weight_hh, w.bias_hh),)
    return (rnn_step(gi, state[0], w.weight_hh, None, mode[4:].lower()),)


def _run_direction(mode: str, x: Tensor, state: tuple[Tensor, ...], w, reverse: bool,
                   mask: Tensor | None) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
    """Run one layer in one direction over ``x`` (T, [B,] I).

    Returns the outputs ``(T, [B,] H_out)`` in time order and the T+1 states in the order
    they were computed (entry 0 the initial state), each the tensor the next step consumed.
    """
    steps = x.shape[0]
    previous: list[Tensor] = [x] * steps                       # the h fed to each step
    if mode == "GRU":                                          # r gates W_hn h + b_hn
        gi = torch.nn.functional.linear(x, w.weight_ih, w.bias_ih)
    else:                                                      # W_hh's grad comes from gi's
        bias = None if w.bias_ih is None else w.bias_ih + w.bias_hh
        gi = _ProjectionWithRecurrentGrad.apply(x, w.weight_ih, bias, w.weight_hh, previous)
        w = w._replace(weight_hh=w.weight_hh.detach())
    # unbind, not gi[t]: the backward of T selects would write T full-size zero tensors
    gi = gi.unbind(0)                                          # T x ([B,] G*H)
    outputs: list[Tensor] = [x] * steps
    states = [state]
    recording = torch.is_grad_enabled()                        # else no backward will need h
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        if recording:
            previous[t] = state[0].detach()
        new = _step(mode, gi[t], state, w)                     # one matmul with W_hh
        if mask is not None:                                   # packed: stop after the end
            new = tuple(torch.where(mask[t], n, s) for n, s in zip(new, state))
        state = new
        states.append(state)
        outputs[t] = state[0]
    return torch.stack(outputs), states


def unroll(module, input, hx=None, *, return_states: bool = False):
    """Compute ``module(input, hx)`` one step at a time; see the module docstring.

    Returns ``(output, h_n)`` (for LSTM ``(output, (h_n, c_n))``) equal in shape and value to
    the fused ``forward`` — and with equal gradients — for every option torch accepts.
    Dropout between layers is applied in training mode (with its own random mask).

    With ``return_states=True`` returns ``(output, h_n, states)``: ``states[layer * D +
    direction]`` is a list of T+1 entries, entry t the state after t steps of that direction
    (entry 0 the initial state; ``(h_t, c_t)`` for LSTM; ``(B, H_out)``, or ``(H_out,)`` for
    unbatched input), the very tensors the next step consumed, so
    ``torch.autograd.grad(loss, states[k][t])`` is the total derivative of the loss with respect
    to that state. For a PackedSequence a finished sequence keeps its last state.

    First-order gradients only: for RNN and LSTM, W_hh's gradient is formed in one product at
    the input projection (:class:`_ProjectionWithRecurrentGrad`), which refuses a double
    backward rather than return a wrong second derivative.
    """
    check_recurrent("module", module)
    seq = time_major(module, input)
    initial = _initial_states(module, hx, seq)
    mask = None
    if seq.lengths is not None:
        steps = torch.arange(seq.data.shape[0], device=seq.data.device)
        mask = (steps[:, None] < seq.lengths.to(seq.data.device)[None, :]).unsqueeze(-1)
    D = num_directions(module)
    finals, trajectories, outputs = [], [], []
    layer_input = seq.data
    for index, (layer, direction) in enumerate(directions(module)):
        if direction == 0 and layer > 0:
            layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=-1)
            if module.dropout and module.training:
                layer_input = torch.nn.functional.dropout(layer_input, module.dropout, True)
            outputs = []
        out, states = _run_direction(module.mode, layer_input, initial[index],
                                     weights(module, layer, direction), bool(direction), mask)
        outputs.append(out)
        finals.append(states[-1])
        trajectories.append(states if module.mode == "LSTM" else [s[0] for s in states])
    output = outputs[0] if D == 1 else torch.cat(outputs, dim=-1)
    output, h_n = _as_output(module, output, finals, input, seq)
    return (output, h_n, trajectories) if return_states else (output, h_n)


def trajectory(module, input, hx=None) -> tuple[TimeMajor, list]:
    """The states of :func:`unroll` for sequences of one length: ``(seq, states)``.

    ``seq`` is ``input`` as :func:`time_major` checks and returns it, ``states`` the list that
    ``unroll(module, input, hx, return_states=True)`` returns (with the graph autograd records,
    if any). A :class:`~torch.nn.utils.rnn.PackedSequence` is refused (TypeError): a finished
    sequence keeps its last state, which no step Jacobian of the recurrence describes.
    """
    check_recurrent("module", module)
    seq = time_major(module, input)
    if seq.lengths is not None:
        raise TypeError("input: expected a torch.Tensor (sequences of one length), got "
                        "PackedSequence")
    _, _, states = unroll(module, input, hx, return_states=True)
    return seq, states


def _as_output(module, output: Tensor, finals, input, seq: TimeMajor):
    h_n = tuple(torch.stack(parts) for parts in zip(*finals))  # each (K, [B,] size)
    if seq.lengths is not None:
        output = _repack(output, input)
    elif seq.batched and module.batch_first:
        output = output.transpose(0, 1)
    return output, (h_n[0] if len(h_n) == 1 else h_n)


class _ProjectionWithRecurrentGrad(torch.autograd.Function):
    r"""``G = x W_ih^T + b`` (T, [B,] G*H) whose backward also returns W_hh's gradient.

    In the gates :math:`G_t + W_{hh} h_{t-1}` the recurrent term is added linearly, so
    :math:`\partial L / \partial G_t` is the gradient of step t's gates and

    .. math:: \frac{\partial L}{\partial W_{hh}} = \sum_t
              \Big(\frac{\partial L}{\partial G_t}\Big)^{\!\top} h_{t-1}
              = \mathrm{d}G^\top H_{\text{prev}}

    is one (G*H × T*B) @ (T*B × P) product instead of T small ones inside the loop (whose steps
    use ``W_hh.detach()``). ``previous`` is the list of the T states ``h_{t-1}``, filled by the
    loop after this forward returns. First-order gradients only (no double backward).
    """

    @staticmethod
    def forward(ctx, x, weight_ih, bias, weight_hh, previous):
        ctx.save_for_backward(x, weight_ih)
        ctx.previous = previous
        ctx.has_bias = bias is not None
        return torch.nn.functional.linear(x, weight_ih, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight_ih = ctx.saved_tensors
        flat = grad.reshape(-1, grad.shape[-1])                   # (T*B, G*H)
        need = ctx.needs_input_grad
        grad_x = grad @ weight_ih if need[0] else None
        grad_ih = flat.t() @ x.reshape(-1, x.shape[-1]) if need[1] else None
        grad_bias = flat.sum(0) if ctx.has_bias and need[2] else None
        grad_hh = None
        if need[3]:
            previous = torch.stack(ctx.previous)                  # (T, [B,] P)
            grad_hh = flat.t() @ previous.reshape(-1, previous.shape[-1])
        return grad_x, grad_ih, grad_bias, grad_hh, None


def _repack(output: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``output`` (T, B, F), in original batch order, with the layout of ``like``."""
    batch_sizes = like.batch_sizes
    order = like.sorted_indices
    if order is None:
        order = torch.arange(int(batch_sizes[0]), device=output.device)
    order = order.to(output.device)
    time = torch.repeat_interleave(torch.arange(len(batch_sizes)), batch_sizes).to(output.device)
    batch = torch.cat([order[: int(size)] for size in batch_sizes])
    return PackedSequence(output[time, batch], batch_sizes, like.sorted_indices,
                          like.unsorted_indices)
