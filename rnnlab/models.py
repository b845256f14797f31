r"""``RNN``, ``LSTM``, ``GRU``: torch's modules with a transparent step-by-step path.

Each class subclasses its ``torch.nn`` namesake — same constructor, parameters, ``state_dict``
and fused ``forward`` — and adds :meth:`unroll`, which computes the same ``(output, h_n)`` one
time step at a time with the equations of :mod:`rnnlab.cells`. Every hidden state ``h_t`` is then
a node of the autograd graph (and reachable by hooks), which the fused kernel hides.

For layer :math:`l` and direction :math:`d`, with :math:`x^{(0)}_t = x_t` and
:math:`x^{(l)}_t` the concatenated outputs of layer :math:`l-1`:

.. math::
    G_t = W_{ih} x^{(l)}_t + b_{ih} \quad \text{(all } t \text{ in one matmul)}, \qquad
    s_t = \mathrm{step}(G_t, s_{t-1})  \quad \text{(one matmul with } W_{hh} \text{ per step)}

where ``step`` is :func:`~rnnlab.cells.rnn_step`, :func:`~rnnlab.cells.lstm_step` or
:func:`~rnnlab.cells.gru_step`. The reverse direction runs :math:`t = T, \dots, 1`.

Shapes (torch's legend): ``L`` sequence length (``T`` in the book), ``N`` batch size,
``H_in`` input size, ``H_out`` = ``proj_size`` if an LSTM has one else ``hidden_size``,
``D`` = 2 if bidirectional else 1.

* input: ``(L, N, H_in)``, or ``(N, L, H_in)`` when ``batch_first``, or unbatched ``(L, H_in)``,
  or a :class:`~torch.nn.utils.rnn.PackedSequence`;
* ``hx``: ``(D * num_layers, N, H_out)`` (unbatched: no ``N``); for LSTM a tuple ``(h_0, c_0)``
  with ``c_0`` of size ``hidden_size``; zeros when ``None``;
* output: ``(L, N, D * H_out)`` (batch-first / unbatched / packed like the input);
  ``h_n`` like ``hx``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from rnnlab.cells import check_like, gru_step, lstm_step, rnn_step

__all__ = ["RNN", "LSTM", "GRU"]


class _Unrolled:
    """Mixin: the step-by-step forward shared by the three classes."""

    def unroll(self, input, hx=None):
        """Compute ``forward(input, hx)`` one step at a time; see the module docstring.

        Returns ``(output, h_n)`` (for LSTM ``(output, (h_n, c_n))``) equal in shape and value to
        the fused ``forward`` — and with equal gradients — for every option torch accepts.
        Dropout between layers is applied in training mode (with its own random mask).
        First-order gradients only: for RNN and LSTM, W_hh's gradient is formed in one product
        at the input projection (:class:`_ProjectionWithRecurrentGrad`), which refuses a double
        backward rather than return a wrong second derivative.
        """
        x, lengths, packed, batched = self._as_time_major(input)
        states = self._initial_states(hx, x, batched)          # list over layer*D of states
        mask = None
        if lengths is not None:
            steps = torch.arange(x.shape[0], device=x.device)
            mask = (steps[:, None] < lengths.to(x.device)[None, :]).unsqueeze(-1)  # (L, N, 1)
        num_directions = 2 if self.bidirectional else 1
        finals = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(num_directions):
                index = layer * num_directions + direction
                out, final = self._run_direction(layer_input, states[index], layer, direction,
                                                 mask)
                outputs.append(out)
                finals.append(final)
            layer_input = outputs[0] if num_directions == 1 else torch.cat(outputs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = torch.nn.functional.dropout(layer_input, self.dropout, True)
        return self._as_output(layer_input, finals, input, packed, batched)

    # ---------------------------------------------------------------------------------------
    # input and state handling
    # ---------------------------------------------------------------------------------------

    def _as_time_major(self, input):
        """Return ``(x (L, N, H_in), lengths or None, packed?, batched?)``."""
        if isinstance(input, PackedSequence):
            x, lengths = pad_packed_sequence(input)            # original batch order
            return self._checked(x, "input.data"), lengths, True, True
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected a Tensor or PackedSequence, got "
                            f"{type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"input: expected a 2-D (unbatched) or 3-D (batched) tensor, got "
                             f"shape {tuple(input.shape)}")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        return self._checked(x, "input"), None, False, batched

    def _checked(self, x: Tensor, name: str) -> Tensor:
        weight = self.weight_ih_l0
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected last dimension input_size={self.input_size}, "
                             f"got shape {tuple(x.shape)}")
        check_like(name, x, "the parameters", weight)
        return x

    def _state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def _initial_states(self, hx, x: Tensor, batched: bool) -> list[tuple[Tensor, ...]]:
        """Split torch's ``hx`` into one tuple of (N, size) states per layer and direction."""
        layers = self.num_layers * (2 if self.bidirectional else 1)
        sizes = self._state_sizes()
        batch = x.shape[1]
        if hx is None:
            return [tuple(x.new_zeros(batch, size) for size in sizes)] * layers
        tensors = (hx,) if len(sizes) == 1 else hx
        if len(sizes) > 1 and (not isinstance(hx, (tuple, list)) or len(hx) != len(sizes)):
            raise TypeError(f"hx: expected a tuple (h_0, c_0) or None, got {type(hx).__name__}")
        checked = []
        for k, (tensor, size) in enumerate(zip(tensors, sizes)):
            name = "hx" if len(sizes) == 1 else f"hx[{k}]"
            expected = (layers, batch, size) if batched else (layers, size)
            if not isinstance(tensor, Tensor):
                raise TypeError(f"{name}: expected a Tensor, got {type(tensor).__name__}")
            if tuple(tensor.shape) != expected:
                raise ValueError(f"{name}: expected shape {expected}, got "
                                 f"{tuple(tensor.shape)}")
            if tensor.dtype != x.dtype or tensor.device != x.device:
                raise TypeError(f"{name}: expected dtype {x.dtype} on {x.device} like the "
                                f"input, got {tensor.dtype} on {tensor.device}")
            checked.append(tensor if batched else tensor.unsqueeze(1))
        return [tuple(t[i] for t in checked) for i in range(layers)]

    def _as_output(self, output: Tensor, finals, input, packed: bool, batched: bool):
        h_n = tuple(torch.stack(parts) for parts in zip(*finals))  # each (D*layers, N, size)
        if packed:
            output = _repack(output, input)
        elif not batched:
            output = output.squeeze(1)
            h_n = tuple(t.squeeze(1) for t in h_n)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n[0] if len(h_n) == 1 else h_n)

    # ---------------------------------------------------------------------------------------
    # the loop over time: the only place where it lives
    # ---------------------------------------------------------------------------------------

    def _weights(self, layer: int, direction: int) -> dict[str, Tensor | None]:
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return {name: getattr(self, name + suffix, None)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}

    def _run_direction(self, x: Tensor, state: tuple[Tensor, ...], layer: int, direction: int,
                       mask: Tensor | None):
        """Run one layer in one direction over ``x`` (L, N, H_in); return (outputs, final)."""
        weights = self._weights(layer, direction)
        previous: list[Tensor] = [x] * x.shape[0]               # the h fed to each step
        # unbind, not gi[t]: the backward of L selects would write L full-size zero tensors
        gi = self._input_projection(x, weights, previous).unbind(0)  # L x (N, G*H): one matmul
        if self._defers_recurrent_grad:                         # W_hh's grad comes from gi's
            weights = dict(weights, weight_hh=weights["weight_hh"].detach())
        steps = range(x.shape[0] - 1, -1, -1) if direction else range(x.shape[0])
        outputs: list[Tensor] = [x] * x.shape[0]
        for t in steps:
            previous[t] = state[0].detach()
            new = self._step(gi[t], state, weights)             # one matmul with W_hh
            if mask is not None:                                # packed: stop after the end
                new = tuple(torch.where(mask[t], n, s) for n, s in zip(new, state))
            state = new
            outputs[t] = state[0]
        return torch.stack(outputs), state                      # (L, N, H_out)

    _defers_recurrent_grad = True

    def _input_projection(self, x: Tensor, weights, previous: list[Tensor]) -> Tensor:
        """``W_ih x_t + b_ih + b_hh`` for all t (folding b_hh is exact for RNN and LSTM).

        The recurrent term ``W_hh h_{t-1}`` is added to this projection linearly, so the
        projection's gradient is the gates' gradient and W_hh's gradient can be formed from it
        in one product (see :class:`_ProjectionWithRecurrentGrad`); ``previous`` is filled with
        the states ``h_{t-1}`` during the loop.
        """
        bias = weights["bias_ih"]
        if bias is not None:
            bias = bias + weights["bias_hh"]
        return _ProjectionWithRecurrentGrad.apply(x, weights["weight_ih"], bias,
                                                  weights["weight_hh"], previous)


class RNN(_Unrolled, torch.nn.RNN):
    r"""``torch.nn.RNN`` with :meth:`unroll`.

    .. math:: h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),
              \quad \phi \in \{\tanh, \mathrm{relu}\}
    """

    def _step(self, gi, state, weights):
        return (rnn_step(gi, state[0], weights["weight_hh"], None, self.nonlinearity),)


class LSTM(_Unrolled, torch.nn.LSTM):
    r"""``torch.nn.LSTM`` with :meth:`unroll` (gate rows i, f, g, o; see
    :func:`rnnlab.cells.lstm_step` for the equations). The state is the pair ``(h_t, c_t)``.
    """

    def _state_sizes(self):
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def _step(self, gi, state, weights):
        return lstm_step(gi, state[0], state[1], weights["weight_hh"], None,
                         weights["weight_hr"])


class GRU(_Unrolled, torch.nn.GRU):
    r"""``torch.nn.GRU`` with :meth:`unroll` (gate rows r, z, n; see
    :func:`rnnlab.cells.gru_step`). ``b_hh`` stays inside the step: its n-block is gated by r.
    """

    _defers_recurrent_grad = False                              # r gates W_hn h + b_hn

    def _input_projection(self, x, weights, previous):
        return torch.nn.functional.linear(x, weights["weight_ih"], weights["bias_ih"])

    def _step(self, gi, state, weights):
        return (gru_step(gi, state[0], weights["weight_hh"], weights["bias_hh"]),)


class _ProjectionWithRecurrentGrad(torch.autograd.Function):
    r"""``G = x W_ih^T + b`` (L, N, G*H) whose backward also returns W_hh's gradient.

    In the gates :math:`G_t + W_{hh} h_{t-1}` the recurrent term is added linearly, so
    :math:`\partial L / \partial G_t` is the gradient of step t's gates and

    .. math:: \frac{\partial L}{\partial W_{hh}} = \sum_t
              \Big(\frac{\partial L}{\partial G_t}\Big)^{\!\top} h_{t-1}
              = \mathrm{d}G^\top H_{\text{prev}}

    is one (G*H × L*N) @ (L*N × P) product instead of L small ones inside the loop (whose steps
    use ``W_hh.detach()``). ``previous`` is the list of the L states ``h_{t-1}``, filled by the
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
        flat = grad.reshape(-1, grad.shape[-1])                   # (L*N, G*H)
        need = ctx.needs_input_grad
        grad_x = grad @ weight_ih if need[0] else None
        grad_ih = flat.t() @ x.reshape(-1, x.shape[-1]) if need[1] else None
        grad_bias = flat.sum(0) if ctx.has_bias and need[2] else None
        grad_hh = None
        if need[3]:
            previous = torch.stack(ctx.previous)                  # (L, N, P)
            grad_hh = flat.t() @ previous.reshape(-1, previous.shape[-1])
        return grad_x, grad_ih, grad_bias, grad_hh, None


def _repack(output: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``output`` (L, N, F), in original batch order, with the layout of ``like``."""
    batch_sizes = like.batch_sizes
    order = like.sorted_indices
    if order is None:
        order = torch.arange(int(batch_sizes[0]), device=output.device)
    order = order.to(output.device)
    time = torch.repeat_interleave(torch.arange(len(batch_sizes)), batch_sizes).to(output.device)
    batch = torch.cat([order[: int(size)] for size in batch_sizes])
    return PackedSequence(output[time, batch], batch_sizes, like.sorted_indices,
                          like.unsorted_indices)
