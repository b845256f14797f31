"""rnnlab.RNN/LSTM/GRU: ``unroll`` equals torch's fused ``forward`` in values, shapes, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from rnnlab.models import GRU, LSTM, RNN

I, H, P, N, L = 3, 5, 2, 4, 6
DTYPE = torch.float64


def _configs():
    for cls, extra in [(RNN, {"nonlinearity": "tanh"}), (RNN, {"nonlinearity": "relu"}),
                       (LSTM, {}), (LSTM, {"proj_size": P}), (GRU, {})]:
        for num_layers, bias, batch_first, bidirectional in itertools.product(
                (1, 2), (True, False), (True, False), (False, True)):
            yield cls, dict(extra, num_layers=num_layers, bias=bias, batch_first=batch_first,
                            bidirectional=bidirectional, dropout=0.5 if num_layers > 1 else 0.0)


CONFIGS = list(_configs())


def _ids(config):
    cls, kwargs = config
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


def _make(cls, kwargs):
    model = cls(I, H, dtype=DTYPE, **kwargs)
    model.eval()                                   # dropout off: unroll must equal forward
    return model


def _hx(model, batched):
    layers = model.num_layers * (2 if model.bidirectional else 1)
    batch = (N,) if batched else ()
    out = model.proj_size if isinstance(model, torch.nn.LSTM) and model.proj_size else H
    h0 = torch.randn(layers, *batch, out, dtype=DTYPE, requires_grad=True)
    if isinstance(model, torch.nn.LSTM):
        return h0, torch.randn(layers, *batch, H, dtype=DTYPE, requires_grad=True)
    return h0


def _leaves(hx):
    return [] if hx is None else list(hx) if isinstance(hx, tuple) else [hx]


def _flat(result):
    output, h_n = result
    if isinstance(output, PackedSequence):
        output = output.data
    return [output, *(h_n if isinstance(h_n, tuple) else (h_n,))]


def _assert_same_values_and_grads(model, x, hx):
    leaves = [p for p in model.parameters()] + _leaves(hx)
    if isinstance(x, torch.Tensor):
        leaves.append(x)
    else:
        leaves.append(x.data)
    fused = _flat(model(x, hx))
    mine = _flat(model.unroll(x, hx))
    assert [t.shape for t in mine] == [t.shape for t in fused]
    for a, b in zip(mine, fused):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    weights = [torch.randn_like(t) for t in fused]
    loss_fused = sum((w * t).sum() for w, t in zip(weights, fused))
    loss_mine = sum((w * t).sum() for w, t in zip(weights, mine))
    grads_fused = torch.autograd.grad(loss_fused, leaves, allow_unused=True)
    grads_mine = torch.autograd.grad(loss_mine, leaves, allow_unused=True)
    for a, b in zip(grads_mine, grads_fused):
        if b is None:
            assert a is None or torch.count_nonzero(a) == 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx=None", "hx"])
def test_unroll_matches_fused_batched(config, with_hx):
    model = _make(*config)
    shape = (N, L, I) if model.batch_first else (L, N, I)
    x = torch.randn(*shape, dtype=DTYPE, requires_grad=True)
    _assert_same_values_and_grads(model, x, _hx(model, True) if with_hx else None)


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
@pytest.mark.parametrize("with_hx", [False, True], ids=["hx=None", "hx"])
def test_unroll_matches_fused_unbatched(config, with_hx):
    model = _make(*config)
    x = torch.randn(L, I, dtype=DTYPE, requires_grad=True)
    _assert_same_values_and_grads(model, x, _hx(model, False) if with_hx else None)


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_unroll_matches_fused_packed_sequence(config, enforce_sorted):
    model = _make(*config)
    lengths = torch.tensor([6, 4, 4, 1]) if enforce_sorted else torch.tensor([3, 6, 1, 4])
    shape = (N, L, I) if model.batch_first else (L, N, I)
    padded = torch.randn(*shape, dtype=DTYPE, requires_grad=True)
    packed = pack_padded_sequence(padded, lengths, batch_first=model.batch_first,
                                  enforce_sorted=enforce_sorted)
    _assert_same_values_and_grads(model, packed, _hx(model, True))


def test_unroll_is_a_drop_in_for_the_parent_class():
    model = LSTM(I, H, num_layers=2)
    reference = torch.nn.LSTM(I, H, num_layers=2)
    reference.load_state_dict(model.state_dict())
    x = torch.randn(L, N, I)
    torch.testing.assert_close(model.unroll(x)[0], reference(x)[0], rtol=1e-5, atol=1e-6)
    assert isinstance(model, torch.nn.LSTM)
    assert list(model.state_dict()) == list(reference.state_dict())


def test_unroll_exposes_every_step_to_autograd():
    """The loss at the last step depends on h_1 through the graph: grad of h_1 is reachable."""
    model = RNN(I, H, dtype=DTYPE)
    x = torch.randn(L, 1, I, dtype=DTYPE)
    output, _ = model.unroll(x)
    output.retain_grad()
    output[-1].sum().backward()
    per_step = output.grad.norm(dim=(1, 2))
    assert per_step[-1] > 0 and torch.all(per_step[:-1] == 0)


def test_unroll_applies_dropout_between_layers_in_training_mode():
    model = GRU(I, H, num_layers=2, dropout=0.9, dtype=DTYPE).train()
    x = torch.randn(L, N, I, dtype=DTYPE)
    torch.manual_seed(1)
    a = model.unroll(x)[0]
    torch.manual_seed(2)
    b = model.unroll(x)[0]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("bad, error, words", [
    (torch.randn(2, 3, 4, 5), ValueError, "3-D"),
    (torch.randn(L, N, I + 1), ValueError, "input_size=3"),
    (torch.randn(L, N, I, dtype=torch.float32), TypeError, "float64"),
    ([1.0, 2.0], TypeError, "PackedSequence"),
])
def test_unroll_rejects_bad_input_with_a_clear_message(bad, error, words):
    model = RNN(I, H, dtype=DTYPE)
    with pytest.raises(error, match=words):
        model.unroll(bad)


def test_unroll_rejects_bad_hx_with_a_clear_message():
    lstm = LSTM(I, H, dtype=DTYPE)
    x = torch.randn(L, N, I, dtype=DTYPE)
    with pytest.raises(TypeError, match=r"tuple \(h_0, c_0\)"):
        lstm.unroll(x, torch.zeros(1, N, H, dtype=DTYPE))
    with pytest.raises(ValueError, match=r"hx\[1\]: expected shape \(1, 4, 5\)"):
        lstm.unroll(x, (torch.zeros(1, N, H, dtype=DTYPE), torch.zeros(1, N, 2, dtype=DTYPE)))
    with pytest.raises(TypeError, match="float64"):
        RNN(I, H, dtype=DTYPE).unroll(x, torch.zeros(1, N, H))


def test_unroll_gives_w_hh_alone_the_fused_gradient_when_asked_for_it_alone():
    """W_hh's gradient is formed in one product at the input projection: check it in isolation."""
    model = LSTM(I, H, num_layers=2, bidirectional=True, dtype=DTYPE).eval()
    x = torch.randn(L, N, I, dtype=DTYPE)
    weights = [model.weight_hh_l0, model.weight_hh_l1_reverse]
    want = torch.autograd.grad(model(x)[0].pow(2).sum(), weights)
    got = torch.autograd.grad(model.unroll(x)[0].pow(2).sum(), weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_unroll_rejects_double_backward_instead_of_returning_a_wrong_hessian():
    model = RNN(I, H, dtype=DTYPE)
    output = model.unroll(torch.randn(L, N, I, dtype=DTYPE))[0]
    (grad,) = torch.autograd.grad(output.pow(2).sum(), model.weight_hh_l0, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()
