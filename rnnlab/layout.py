r"""Torch's parameter layout of a recurrent module, decoded in one place.

A ``torch.nn.RNN``/``LSTM``/``GRU`` (any :class:`torch.nn.RNNBase` of a known ``mode``) keeps,
for layer ``l`` and direction ``d`` (``D`` = 2 if bidirectional, else 1), the attributes

==========================  ===============  =============================================
attribute                   shape            meaning
==========================  ===============  =============================================
``weight_ih_l{l}{sfx}``     ``(G·H, I_l)``   :math:`W_{ih}`, G gate blocks stacked by rows
``weight_hh_l{l}{sfx}``     ``(G·H, P)``     :math:`W_{hh}`
``bias_ih_l{l}{sfx}``       ``(G·H,)``       :math:`b_{ih}` (only with ``bias=True``)
``bias_hh_l{l}{sfx}``       ``(G·H,)``       :math:`b_{hh}` (only with ``bias=True``)
``weight_hr_l{l}{sfx}``     ``(P, H)``       LSTM projection (only with ``proj_size = P``)
==========================  ===============  =============================================

with ``sfx`` = ``""`` for the forward and ``"_reverse"`` for the backward direction, ``G`` = 1
(``RNN_TANH``, ``RNN_RELU``), 4 in the order i, f, g, o (``LSTM``) or 3 in the order r, z, n
(``GRU``), ``P`` = ``proj_size`` or ``H``, ``I_0`` = ``input_size`` and ``I_l = D·P`` above.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from torch import Tensor, nn

__all__ = ["GATES", "check_recurrent", "num_directions", "output_size", "state_sizes",
           "Weights", "weights", "directions"]

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def check_recurrent(name: str, module) -> nn.RNNBase:
    """``module`` must be a ``torch.nn.RNN``/``LSTM``/``GRU`` or a subclass (TypeError)."""
    if not isinstance(module, nn.RNNBase) or getattr(module, "mode", None) not in GATES:
        raise TypeError(f"{name}: expected a torch.nn.RNN, LSTM or GRU (any torch.nn.RNNBase), "
                        f"got {type(module).__name__}")
    return module


def num_directions(module: nn.RNNBase) -> int:
    """``D``: 2 if bidirectional, else 1."""
    return 2 if module.bidirectional else 1


def output_size(module: nn.RNNBase) -> int:
    """``H_out``, the size of ``h_t``: ``proj_size`` for an LSTM with projection, else ``H``."""
    return getattr(module, "proj_size", 0) or module.hidden_size


def state_sizes(module: nn.RNNBase) -> tuple[int, ...]:
    """Sizes of the state's parts: ``(H_out, H)`` for ``(h_t, c_t)`` of an LSTM, else ``(H,)``."""
    if module.mode == "LSTM":
        return output_size(module), module.hidden_size
    return (module.hidden_size,)


class Weights(NamedTuple):
    """The parameters of one layer and direction (``None`` where the module has none)."""

    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None
    bias_hh: Tensor | None
    weight_hr: Tensor | None


def weights(module: nn.RNNBase, layer: int, direction: int) -> Weights:
    """The :class:`Weights` of ``layer`` (0-based) in ``direction`` (0 forward, 1 reverse)."""
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    return Weights(*(getattr(module, name + suffix, None) for name in Weights._fields))


def directions(module: nn.RNNBase) -> Iterator[tuple[int, int]]:
    """``(layer, direction)`` in torch's order, the order of ``h_n``'s first dimension."""
    for layer in range(module.num_layers):
        for direction in range(num_directions(module)):
            yield layer, direction
