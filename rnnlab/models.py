r"""``RNN``, ``LSTM``, ``GRU``: torch's modules with a transparent step-by-step path; and
:class:`SequenceModel`, a recurrent core with a linear read-out.

Each of ``RNN``, ``LSTM``, ``GRU`` subclasses its ``torch.nn`` namesake — same constructor,
parameters, ``state_dict`` and fused ``forward`` — and adds :meth:`~_Unrolled.unroll`, which
computes the same ``(output, h_n)`` one time step at a time with the equations of
:mod:`rnnlab.cells` (the loop, its equations and its shapes are in :mod:`rnnlab.loop`;
:func:`unroll` runs it on torch's own modules too). Every state is then a node of the autograd
graph, which the fused kernel hides, and ``unroll(..., return_states=True)`` hands those states
out.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.checks import check_int, check_type
from rnnlab.layout import check_recurrent, num_directions, output_size
from rnnlab.loop import unroll

__all__ = ["RNN", "LSTM", "GRU", "SequenceModel", "unroll"]


class _Unrolled:
    """Mixin: the step-by-step forward shared by the three classes."""

    def unroll(self, input, hx=None, *, return_states: bool = False):
        """``forward(input, hx)`` computed one step at a time: see :func:`rnnlab.loop.unroll`.

        Returns ``(output, h_n)``, or ``(output, h_n, states)`` with ``return_states=True``:
        ``states[layer * D + direction][t]`` is the state after t steps of that direction, the
        very tensor the next step consumed (``(h_t, c_t)`` for LSTM).
        """
        return unroll(self, input, hx, return_states=return_states)


class RNN(_Unrolled, torch.nn.RNN):
    r"""``torch.nn.RNN`` with :meth:`unroll`.

    .. math:: h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),
              \quad \phi \in \{\tanh, \mathrm{relu}\}
    """


class LSTM(_Unrolled, torch.nn.LSTM):
    r"""``torch.nn.LSTM`` with :meth:`unroll` (gate rows i, f, g, o; see
    :func:`rnnlab.cells.lstm_step` for the equations). The state is the pair ``(h_t, c_t)``.
    """


class GRU(_Unrolled, torch.nn.GRU):
    r"""``torch.nn.GRU`` with :meth:`unroll` (gate rows r, z, n; see
    :func:`rnnlab.cells.gru_step`). ``b_hh`` stays inside the step: its n-block is gated by r.
    """


class SequenceModel(nn.Module):
    r"""A batch-first recurrent ``core`` and a linear read-out to ``output_size``.

    .. math:: \hat y = W_{out} h_T + b_{out} \ \text{(many-to-one)}, \qquad
              \hat y_t = W_{out} h_t + b_{out} \ \text{(many-to-many)}

    ``forward(input (B, T, I), hx=None)`` returns (B, O) from the last step, or (B, T, O) when
    ``many_to_many`` (unbatched ``(T, I)``: no ``B``). With ``unroll=True`` the core runs
    step by step (:func:`rnnlab.loop.unroll`) instead of its fused ``forward``; both give the
    same values and gradients.
    """

    def __init__(self, core: nn.RNNBase, output_size: int, *, many_to_many: bool = False,
                 unroll: bool = False):
        super().__init__()
        check_recurrent("core", core)
        if not core.batch_first:
            raise ValueError("core: expected batch_first=True, got batch_first=False")
        check_int("output_size", output_size, 1)
        check_type("unroll", unroll, bool, "a bool")
        self.core = core
        self.readout = nn.Linear(_feature_size(core), output_size)
        self.many_to_many = many_to_many
        self.unroll = unroll

    def features(self, input: Tensor, hx=None):
        """The core's ``(output (B, T, F), h_n)``, F = D * H_out."""
        return unroll(self.core, input, hx) if self.unroll else self.core(input, hx)

    def head(self, output: Tensor) -> Tensor:
        """The read-out of the core's ``output`` (B, T, F): (B, O), or (B, T, O) when
        ``many_to_many``."""
        if not self.many_to_many:
            output = output[..., -1, :]                       # (B, F)
        return self.readout(output)                           # (B, O) or (B, T, O)

    def forward(self, input: Tensor, hx=None) -> Tensor:
        output, _ = self.features(input, hx)                  # (B, T, F)
        return self.head(output)


def _feature_size(core: nn.RNNBase) -> int:
    """``F = D * H_out``, the size of one step of a core's output."""
    return output_size(core) * num_directions(core)
