"""rnnlab.bptt: the written-out recursion and its lag terms against torch.autograd.

References: torch.autograd through torch's own fused ``torch.nn.RNN`` (the full gradient); an
unrolled loop that gives every step its own copy of W_hh, so that autograd hands out the
gradient of each loss L_t with respect to the use of W_hh at each step k separately (the lag
terms); and a straight-through forward pass, tanh values with an identity derivative, for the
backward pass without diag(phi').
"""

from __future__ import annotations

import pytest
import torch

from rnnlab.bptt import bptt_gradients, lag_contributions

T, B, I, H, O = 7, 3, 2, 4, 2
DTYPE = torch.float64


def problem(nonlinearity="tanh", zero_h0=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rnn = torch.nn.RNN(I, H, nonlinearity=nonlinearity, dtype=DTYPE)
    with torch.no_grad():
        for p in rnn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=DTYPE) * 0.7)
    x = torch.randn(T, B, I, generator=gen, dtype=DTYPE)
    y = torch.randn(T, B, O, generator=gen, dtype=DTYPE)
    w_ho = torch.randn(O, H, generator=gen, dtype=DTYPE)
    h0 = torch.zeros(1, B, H, dtype=DTYPE) if zero_h0 else torch.randn(1, B, H, generator=gen,
                                                                         dtype=DTYPE)
    return rnn, x, y, w_ho, h0


def loss_of_outputs(out, y, w_ho):
    return 0.5 * ((out @ w_ho.T - y) ** 2).sum()


def states_and_local_grads(rnn, x, y, w_ho, h0):
    """h_0..h_T from the fused forward pass; g_t = dL_t/dh_t by autograd on detached states."""
    with torch.no_grad():
        out, _ = rnn(x, h0)
    leaf = out.clone().requires_grad_()
    local, = torch.autograd.grad(loss_of_outputs(leaf, y, w_ho), leaf)
    return torch.cat([h0, out]), local


def per_step_weight_grads(rnn, x, y, w_ho, h0, straight_through=False):
    """grads[t][k]: dL_t / d(W_hh used at step k+1), from a loop with one W_hh copy per step."""
    copies = [rnn.weight_hh_l0.detach().clone().requires_grad_() for _ in range(T)]
    bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach()
    h, losses = h0[0], []
    for k in range(T):
        a = x[k] @ rnn.weight_ih_l0.detach().T + bias + h @ copies[k].T
        h = torch.tanh(a)
        if straight_through:                         # value tanh(a), derivative 1
            h = a + (h - a).detach()
        losses.append(loss_of_outputs(h, y[k], w_ho))
    return [torch.autograd.grad(loss, copies[: t + 1], retain_graph=True)
            for t, loss in enumerate(losses)]


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_bptt_gradients_match_autograd_through_torch_rnn(nonlinearity):
    rnn, x, y, w_ho, h0 = problem(nonlinearity)
    states, local = states_and_local_grads(rnn, x, y, w_ho, h0)
    mine = bptt_gradients(x, states, rnn.weight_hh_l0.detach(), local,
                          nonlinearity=nonlinearity)
    ref = torch.autograd.grad(loss_of_outputs(rnn(x, h0)[0], y, w_ho),
                              [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0,
                               rnn.bias_hh_l0])
    for got, want in zip([mine["weight_ih"], mine["weight_hh"], mine["bias"], mine["bias"]],
                         ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_lag_terms_sum_to_the_full_gradient(nonlinearity):
    rnn, x, y, w_ho, h0 = problem(nonlinearity, seed=1)
    states, local = states_and_local_grads(rnn, x, y, w_ho, h0)
    C = lag_contributions(states, rnn.weight_hh_l0.detach(), local, nonlinearity=nonlinearity)
    ref, = torch.autograd.grad(loss_of_outputs(rnn(x, h0)[0], y, w_ho), [rnn.weight_hh_l0])
    assert C.shape == (T, H, H)
    torch.testing.assert_close(C.sum(0), ref, rtol=1e-10, atol=1e-12)


def test_each_lag_term_is_the_sum_of_its_paths_from_per_step_weights():
    rnn, x, y, w_ho, h0 = problem(seed=2)
    states, local = states_and_local_grads(rnn, x, y, w_ho, h0)
    C = lag_contributions(states, rnn.weight_hh_l0.detach(), local)
    grads = per_step_weight_grads(rnn, x, y, w_ho, h0)
    for lag in range(T):
        want = sum(grads[t][t - lag] for t in range(lag, T))
        torch.testing.assert_close(C[lag], want, rtol=1e-10, atol=1e-12)


def test_without_dphi_is_the_straight_through_backward_pass():
    rnn, x, y, w_ho, h0 = problem(seed=3)
    states, local = states_and_local_grads(rnn, x, y, w_ho, h0)
    w = rnn.weight_hh_l0.detach()
    grads = per_step_weight_grads(rnn, x, y, w_ho, h0, straight_through=True)
    want_lags = [sum(grads[t][t - lag] for t in range(lag, T)) for lag in range(T)]
    C = lag_contributions(states, w, local, include_dphi=False)
    full = bptt_gradients(x, states, w, local, include_dphi=False)["weight_hh"]
    torch.testing.assert_close(C, torch.stack(want_lags), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(full, sum(want_lags), rtol=1e-10, atol=1e-12)
    true = bptt_gradients(x, states, w, local)["weight_hh"]
    assert (full - true).norm() > 1e-3 * true.norm()     # the two really differ


def test_longest_lag_vanishes_exactly_from_a_zero_initial_state():
    rnn, x, y, w_ho, h0 = problem(zero_h0=True, seed=4)
    states, local = states_and_local_grads(rnn, x, y, w_ho, h0)
    C = lag_contributions(states, rnn.weight_hh_l0.detach(), local)
    assert torch.count_nonzero(C[-1]) == 0 and C[-2].abs().max() > 0


def test_bad_arguments_are_refused_with_the_argument_named():
    states = torch.zeros(T + 1, B, H, dtype=DTYPE)
    w = torch.zeros(H, H, dtype=DTYPE)
    g = torch.zeros(T, B, H, dtype=DTYPE)
    x = torch.zeros(T, B, I, dtype=DTYPE)
    cases = [
        (lambda: lag_contributions(states.numpy(), w, g), TypeError, "states: expected"),
        (lambda: lag_contributions(states[:1], w, g), ValueError, "states: expected"),
        (lambda: lag_contributions(states, w[:2], g), ValueError, "weight_hh: expected"),
        (lambda: lag_contributions(states, w, g[:2]), ValueError, "grad_states: expected"),
        (lambda: lag_contributions(states, w.float(), g), TypeError,
         r"weight_hh: expected dtype torch.float64 \(the dtype of states\)"),
        (lambda: lag_contributions(states, w.to("meta"), g), ValueError,
         r"weight_hh: expected device cpu \(the device of states\)"),
        (lambda: lag_contributions(states.long(), w, g), TypeError,
         "states: expected a floating-point tensor"),
        (lambda: lag_contributions(states, w, g, nonlinearity="sigmoid"), ValueError,
         "nonlinearity: expected"),
        (lambda: lag_contributions(states, w, g, include_dphi=1), TypeError,
         "include_dphi: expected"),
        (lambda: bptt_gradients(x[:2], states, w, g), ValueError, "input: expected"),
        (lambda: bptt_gradients(None, states, w, g), TypeError, "input: expected"),
        (lambda: bptt_gradients(x.float(), states, w, g), TypeError,
         r"input: expected dtype torch.float64"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
