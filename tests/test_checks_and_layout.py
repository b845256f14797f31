"""rnnlab.checks (one rule for argument errors) and rnnlab.layout (torch's parameter layout)."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlab.checks import (
    check_choice,
    check_int,
    check_like,
    check_number,
    check_tensor,
    check_type,
)
from rnnlab.layout import GATES, check_recurrent, directions, state_sizes, weights


@pytest.mark.parametrize("call, error, message", [
    (lambda: check_int("steps", 2.0, 1), TypeError, "steps: expected an int >= 1, got float"),
    (lambda: check_int("steps", True, 1), TypeError, "steps: expected an int >= 1, got bool"),
    (lambda: check_int("steps", 0, 1), ValueError, "steps: expected an int >= 1, got 0"),
    (lambda: check_number("lr", "0.1"), TypeError, "lr: expected a real number, got str"),
    (lambda: check_number("lr", math.nan), ValueError, "lr: expected a finite number, got nan"),
    (lambda: check_number("c", 0.0, positive=True, finite=False), ValueError,
     "c: expected a number > 0, got 0.0"),
    (lambda: check_number("q", 101, minimum=0, maximum=100), ValueError,
     r"q: expected a finite number in \[0, 100\], got 101"),
    (lambda: check_choice("kind", "cnn", ("rnn", "lstm")), ValueError,
     r"kind: expected one of \('rnn', 'lstm'\), got 'cnn'"),
    (lambda: check_type("task", 3, str, "a name"), TypeError, "task: expected a name, got int"),
    (lambda: check_tensor("x", [1.0]), TypeError, "x: expected a torch.Tensor, got list"),
    (lambda: check_tensor("x", torch.zeros(2), (2, 3)), ValueError,
     r"x: expected a 2-D or 3-D tensor, got shape \(2,\)"),
    (lambda: check_tensor("x", torch.zeros(2, dtype=torch.long), floating=True), TypeError,
     "x: expected a floating-point tensor, got dtype torch.int64"),
    (lambda: check_like("hx", torch.zeros(1), "input", torch.zeros(1, dtype=torch.float64)),
     TypeError, r"hx: expected dtype torch.float64 \(the dtype of input\), got torch.float32"),
    (lambda: check_like("hx", torch.zeros(1, device="meta"), "input", torch.zeros(1)),
     ValueError, r"hx: expected device cpu \(the device of input\), got meta"),
])
def test_wrong_type_is_a_type_error_and_wrong_value_a_value_error_naming_the_argument(
        call, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        call()


def test_checks_return_what_they_accept():
    assert check_int("n", 3, 1) == 3
    assert check_number("c", math.inf, positive=True, finite=False) == math.inf
    assert check_choice("kind", "gru", ("rnn", "gru")) == "gru"


@pytest.mark.parametrize("module", [
    torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2),
    torch.nn.GRU(3, 5, num_layers=3, bias=False),
    torch.nn.RNN(3, 5, nonlinearity="relu", bidirectional=True),
], ids=["LSTM-proj-bidirectional", "GRU-no-bias", "RNN-relu-bidirectional"])
def test_weights_of_each_layer_and_direction_are_torchs_all_weights_in_its_order(module):
    ours = [[w for w in weights(module, layer, direction) if w is not None]
            for layer, direction in directions(module)]
    assert len(ours) == len(module.all_weights)
    for mine, theirs in zip(ours, module.all_weights, strict=True):
        assert len(mine) == len(theirs)
        assert all(a is b for a, b in zip(mine, theirs, strict=True))
    gates = GATES[module.mode]
    assert all(w[0].shape[0] == gates * module.hidden_size for w in ours)


def test_state_sizes_and_the_recurrent_check():
    assert state_sizes(torch.nn.LSTM(3, 5, proj_size=2)) == (2, 5)
    assert state_sizes(torch.nn.GRU(3, 5)) == (5,)
    with pytest.raises(TypeError, match="cell: expected a torch.nn.RNN, LSTM or GRU .*LSTMCell"):
        check_recurrent("cell", torch.nn.LSTMCell(3, 5))
