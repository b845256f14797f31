"""rnnlab.cells: the pure cells equal torch.nn.RNNCell/LSTMCell/GRUCell with the same weights."""

from __future__ import annotations

import pytest
import torch

from rnnlab.cells import gru_cell, lstm_cell, rnn_cell

I, H, B = 3, 5, 4
DTYPE = torch.float64


def _weights(module, bias=True):
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if bias else ("weight_ih",
                                                                          "weight_hh")
    return [getattr(module, name) for name in names]


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_cell_matches_torch_rnn_cell(nonlinearity, batched, bias):
    ref = torch.nn.RNNCell(I, H, bias=bias, nonlinearity=nonlinearity, dtype=DTYPE)
    x = torch.randn(*((B,) if batched else ()), I, dtype=DTYPE)
    h = torch.randn(*((B,) if batched else ()), H, dtype=DTYPE)
    got = rnn_cell(x, h, *_weights(ref, bias), nonlinearity=nonlinearity)
    torch.testing.assert_close(got, ref(x, h), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(rnn_cell(x, None, *_weights(ref, bias), nonlinearity=nonlinearity),
                               ref(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_matches_torch_lstm_cell(batched, bias):
    ref = torch.nn.LSTMCell(I, H, bias=bias, dtype=DTYPE)
    batch = (B,) if batched else ()
    x = torch.randn(*batch, I, dtype=DTYPE)
    hc = (torch.randn(*batch, H, dtype=DTYPE), torch.randn(*batch, H, dtype=DTYPE))
    for state in (hc, None):
        got = lstm_cell(x, state, *_weights(ref, bias))
        want = ref(x, state)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_lstm_cell_with_projection_matches_one_step_of_torch_lstm():
    ref = torch.nn.LSTM(I, H, proj_size=2, dtype=DTYPE)
    x = torch.randn(1, B, I, dtype=DTYPE)
    h0, c0 = torch.randn(1, B, 2, dtype=DTYPE), torch.randn(1, B, H, dtype=DTYPE)
    _, (h1, c1) = ref(x, (h0, c0))
    h, c = lstm_cell(x[0], (h0[0], c0[0]), ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0,
                     ref.bias_hh_l0, weight_hr=ref.weight_hr_l0)
    torch.testing.assert_close(h, h1[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(c, c1[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_matches_torch_gru_cell(batched, bias):
    ref = torch.nn.GRUCell(I, H, bias=bias, dtype=DTYPE)
    batch = (B,) if batched else ()
    x = torch.randn(*batch, I, dtype=DTYPE)
    h = torch.randn(*batch, H, dtype=DTYPE)
    torch.testing.assert_close(gru_cell(x, h, *_weights(ref, bias)), ref(x, h), rtol=1e-10,
                               atol=1e-10)
    torch.testing.assert_close(gru_cell(x, None, *_weights(ref, bias)), ref(x), rtol=1e-10,
                               atol=1e-10)


def test_cells_have_the_same_gradients_as_torch_cells():
    ref = torch.nn.GRUCell(I, H, dtype=DTYPE)
    x = torch.randn(B, I, dtype=DTYPE, requires_grad=True)
    h = torch.randn(B, H, dtype=DTYPE, requires_grad=True)
    leaves = [x, h, *ref.parameters()]
    want = torch.autograd.grad(ref(x, h).pow(2).sum(), leaves)
    got = torch.autograd.grad(gru_cell(x, h, *_weights(ref)).pow(2).sum(), leaves)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def _rnn_args(**overrides):
    args = dict(input=torch.randn(B, I), hx=torch.randn(B, H), weight_ih=torch.randn(H, I),
                weight_hh=torch.randn(H, H), bias_ih=torch.randn(H), bias_hh=torch.randn(H))
    args.update(overrides)
    return args


@pytest.mark.parametrize("overrides, error, words", [
    (dict(nonlinearity="sigmoid"), ValueError, "nonlinearity: expected one of .*'sigmoid'"),
    (dict(input=torch.randn(2, B, I)), ValueError, "input: expected a 1-D or 2-D"),
    (dict(input=[1.0, 2.0]), TypeError, "input: expected a torch.Tensor, got list"),
    (dict(weight_ih=torch.randn(H, I + 1)), ValueError, "weight_ih: expected shape"),
    (dict(weight_hh=torch.randn(H + 1, H)), ValueError, "weight_hh: expected 5 rows"),
    (dict(hx=torch.randn(B + 1, H)), ValueError, "hx: expected batch size 4"),
    (dict(hx=torch.randn(H)), ValueError, "hx: expected 2-D like input"),
    (dict(bias_hh=torch.randn(H + 2)), ValueError, r"bias_hh: expected shape \(5,\)"),
    (dict(hx=torch.randn(B, H, dtype=DTYPE)), TypeError, "hx: expected dtype torch.float32"),
    (dict(input=torch.ones(B, I, dtype=torch.long)), TypeError, "floating-point"),
    (dict(weight_hh=torch.randn(H, H, device="meta")), ValueError, "weight_hh: expected device"),
])
def test_rnn_cell_rejects_bad_arguments_naming_them(overrides, error, words):
    args = _rnn_args(**{k: v for k, v in overrides.items() if k != "nonlinearity"})
    with pytest.raises(error, match=words):
        rnn_cell(**args, nonlinearity=overrides.get("nonlinearity", "tanh"))


def test_lstm_cell_rejects_a_bare_tensor_state():
    ref = torch.nn.LSTMCell(I, H)
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(h, c\)"):
        lstm_cell(torch.randn(B, I), torch.randn(B, H), *_weights(ref))


def test_gru_cell_rejects_weights_that_are_not_three_gate_blocks():
    with pytest.raises(ValueError, match="weight_ih: expected 3\\*hidden_size rows"):
        gru_cell(torch.randn(B, I), None, torch.randn(7, I), torch.randn(7, 2))
