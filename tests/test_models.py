"""rnnlab.RNN/LSTM/GRU: ``unroll`` equals torch's fused ``forward`` in values, shapes, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from rnnlab.loop import trajectory
from rnnlab.models import GRU, LSTM, RNN, unroll

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


def _torch_final(module, x, hx):
    """The final state of torch's fused module over time-major x from hx (torch's format)."""
    return module(x, hx)[1]


@pytest.mark.parametrize("cls, extra", [(RNN, {"nonlinearity": "tanh"}), (LSTM, {}), (GRU, {})],
                         ids=["RNN", "LSTM", "GRU"])
def test_unroll_states_are_torchs_states_after_t_steps(cls, extra):
    """Entry t of layer l is h_n[l] of torch's fused module run over the first t steps."""
    model = _make(cls, dict(extra, num_layers=2))
    x = torch.randn(L, N, I, dtype=DTYPE)
    hx = _hx(model, True)
    output, h_n, states = model.unroll(x, hx, return_states=True)
    assert len(states) == 2 and all(len(per_layer) == L + 1 for per_layer in states)
    for t in range(1, L + 1):
        reference = _torch_final(model, x[:t], hx)
        for layer in range(2):
            got = states[layer][t]
            want = tuple(r[layer] for r in reference) if cls is LSTM else reference[layer]
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    initial = tuple(h[1] for h in hx) if cls is LSTM else hx[1]
    torch.testing.assert_close(states[1][0], initial, rtol=0, atol=0)


def test_unroll_reverse_states_count_steps_of_the_reverse_direction():
    """Entry t of the reverse direction: t steps back from the end, i.e. over x[T-t:]."""
    model = _make(GRU, {"bidirectional": True})
    x = torch.randn(L, N, I, dtype=DTYPE)
    _, _, states = model.unroll(x, return_states=True)
    for t in range(1, L + 1):
        torch.testing.assert_close(states[1][t], _torch_final(model, x[L - t:], None)[1],
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls, extra", [(RNN, {"nonlinearity": "tanh"}), (LSTM, {}), (GRU, {})],
                         ids=["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_unroll_state_gradients_are_total_derivatives_of_the_loss(cls, extra, batched):
    """grad(L, states[0][t]) against autograd of the loss rebuilt from s_t by torch's module.

    L = sum_k <w_k, h_k>. Written as a function of the state s_t alone, L = <w_t, h_t> +
    sum_{k>t} <w_k, h_k(s_t)> (+ the steps before t, which do not depend on s_t), where
    h_k(s_t) comes from torch's fused module run from s_t over x_{t+1..k}.
    """
    model = _make(cls, extra)
    x = torch.randn(L, N, I, dtype=DTYPE) if batched else torch.randn(L, I, dtype=DTYPE)
    w = torch.randn(L, *x.shape[1:-1], H, dtype=DTYPE)
    output, _, (states,) = model.unroll(x, return_states=True)
    loss = (w * output).sum()
    got = torch.autograd.grad(loss, [part for s in states[1:] for part in _parts(s)],
                              allow_unused=True, materialize_grads=True)   # c_T: no later step
    got = [got[i:i + len(_parts(states[1]))] for i in range(0, len(got), len(_parts(states[1])))]
    for t in range(1, L + 1):
        start = [part.detach().requires_grad_() for part in _parts(states[t])]

        def rebuilt(*s, t=t):
            h_t = s[0]
            value = (w[t - 1] * h_t).sum()
            if t < L:
                hx = tuple(p.unsqueeze(0) for p in s) if cls is LSTM else h_t.unsqueeze(0)
                value = value + (w[t:] * model(x[t:], hx)[0]).sum()
            return value

        want = torch.autograd.grad(rebuilt(*start), start, allow_unused=True,
                                   materialize_grads=True)
        for a, b in zip(got[t - 1], want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


def test_unroll_states_of_a_packed_sequence_hold_the_last_state_after_its_end():
    model = _make(LSTM, {})
    lengths = torch.tensor([3, 6, 1, 4])
    packed = pack_padded_sequence(torch.randn(L, N, I, dtype=DTYPE), lengths,
                                  enforce_sorted=False)
    _, (h_n, c_n), (states,) = model.unroll(packed, return_states=True)
    for b, length in enumerate(lengths.tolist()):
        for t in range(length, L + 1):
            torch.testing.assert_close(states[t][0][b], h_n[0, b], rtol=0, atol=0)
            torch.testing.assert_close(states[t][1][b], c_n[0, b], rtol=0, atol=0)


def test_unroll_function_runs_torchs_own_module():
    reference = torch.nn.GRU(I, H, num_layers=2, dtype=DTYPE).eval()
    x = torch.randn(L, N, I, dtype=DTYPE)
    output, h_n = unroll(reference, x)
    want_output, want_h_n = reference(x)
    torch.testing.assert_close(output, want_output, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_n, want_h_n, rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="module: expected a torch.nn.RNN, LSTM or GRU"):
        unroll(torch.nn.Linear(I, H), x)


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
    (torch.randn(0, N, I, dtype=DTYPE), ValueError, "at least one time step"),  # torch: too
    (torch.randn(0, I, dtype=DTYPE), ValueError, "at least one time step"),
])
def test_unroll_rejects_bad_input_with_a_clear_message(bad, error, words):
    model = RNN(I, H, dtype=DTYPE)
    with pytest.raises(error, match=words):
        model.unroll(bad)


def test_trajectory_returns_unrolls_states_and_refuses_packed_sequences():
    model = GRU(I, H, dtype=DTYPE)
    x = torch.randn(L, N, I, dtype=DTYPE)
    seq, states = trajectory(model, x)
    _, _, want = model.unroll(x, return_states=True)
    assert seq.batched and torch.equal(seq.data, x)
    assert all(torch.equal(a, b) for a, b in zip(states[0], want[0], strict=True))
    packed = pack_padded_sequence(x, [L] * N)
    with pytest.raises(TypeError, match="sequences of one length"):
        trajectory(model, packed)


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
