"""rnnlab.init: statistics of the draws, exact orthogonality/identity, spectral radius against
numpy, and the effective LSTM forget bias read off torch's own forward pass."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import rnnlab.init as init
from rnnlab.models import GRU, LSTM, RNN

DTYPE = torch.float64


def _gates(module) -> int:
    return {torch.nn.LSTM: 4, torch.nn.GRU: 3}.get(
        next(c for c in type(module).__mro__ if c in (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)),
        1)


def _weight_blocks(module):
    """(name, block, fan_in, fan_out) for every gate block, from torch's own parameter names."""
    hidden = module.hidden_size
    for name, param in module.named_parameters():
        if name.startswith("weight_hr"):
            yield name, param, param.shape[1], param.shape[0]
        elif name.startswith("weight"):
            for k, block in enumerate(param.chunk(_gates(module), dim=0)):
                assert block.shape[0] == hidden
                yield f"{name}[{k}]", block, param.shape[1], hidden


def _excess_kurtosis(x: torch.Tensor) -> float:
    z = (x - x.mean()) / x.std()
    return (z ** 4).mean().item() - 3.0


def _biases(module):
    return [p for name, p in module.named_parameters() if name.startswith("bias")]


# --------------------------------------------------------------------------------------------
# xavier_ and he_
# --------------------------------------------------------------------------------------------

CONFIGS = [
    (torch.nn.LSTM, dict(input_size=64, hidden_size=128)),
    (torch.nn.LSTM, dict(input_size=48, hidden_size=128, num_layers=2, bidirectional=True,
                         proj_size=32)),
    (torch.nn.GRU, dict(input_size=200, hidden_size=96, num_layers=2)),
    (torch.nn.RNN, dict(input_size=100, hidden_size=160, nonlinearity="relu",
                        bidirectional=True)),
    (LSTM, dict(input_size=64, hidden_size=128, bias=False)),
    (GRU, dict(input_size=64, hidden_size=128)),
    (RNN, dict(input_size=64, hidden_size=128, num_layers=3)),
]

RULES = {
    "xavier_": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),
    "he_": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),
}


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("cls,kwargs", CONFIGS,
                         ids=lambda c: f"{c.__module__.split('.')[0]}.{c.__name__}"
                         if isinstance(c, type) else None)
def test_normal_init_has_the_per_block_std_of_its_formula_and_zero_biases(rule, cls, kwargs):
    module = cls(**kwargs)
    assert getattr(init, rule)(module) is module
    pooled = []
    for name, block, fan_in, fan_out in _weight_blocks(module):
        std = RULES[rule](fan_in, fan_out)
        sample = block.detach().flatten()
        assert abs(sample.std().item() / std - 1) < 0.05, name
        assert abs(sample.mean().item()) < 5 * std / math.sqrt(sample.numel()), name
        pooled.append(sample / std)
    assert abs(_excess_kurtosis(torch.cat(pooled))) < 0.2          # normal, not uniform (-1.2)
    for bias in _biases(module):
        assert torch.count_nonzero(bias) == 0


def test_xavier_uses_the_fan_out_of_one_gate_block_not_of_the_stacked_matrix():
    lstm = init.xavier_(torch.nn.LSTM(input_size=128, hidden_size=256))
    measured = lstm.weight_ih_l0.detach().std().item()
    assert measured == pytest.approx(math.sqrt(2 / (128 + 256)), rel=0.03)
    assert abs(measured - math.sqrt(2 / (128 + 4 * 256))) > 0.02    # the whole-matrix formula


def test_normal_init_keeps_parameters_trainable_leaves():
    lstm = init.he_(torch.nn.LSTM(4, 8, num_layers=2))
    for param in lstm.parameters():
        assert param.requires_grad and param.grad_fn is None
    output, _ = lstm(torch.randn(5, 3, 4))
    output.sum().backward()
    assert all(p.grad is not None for p in lstm.parameters())


@pytest.mark.parametrize("rule", ["xavier_", "he_", "orthogonal_"])
def test_generator_makes_the_draw_reproducible(rule):
    def draw(seed):
        module = torch.nn.GRU(6, 10, num_layers=2)
        getattr(init, rule)(module, generator=torch.Generator().manual_seed(seed))
        return torch.cat([p.detach().flatten() for name, p in module.named_parameters()
                          if name.startswith("weight_hh")])     # set by all three rules

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


# --------------------------------------------------------------------------------------------
# orthogonal_
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gain", [1.0, 0.5, 1.7])
@pytest.mark.parametrize("cls", [torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU, LSTM],
                         ids=["torch.RNN", "torch.LSTM", "torch.GRU", "rnnlab.LSTM"])
def test_orthogonal_makes_every_recurrent_gate_block_gain_times_orthogonal(cls, gain):
    hidden = 24
    module = cls(5, hidden, num_layers=2, bidirectional=True, dtype=DTYPE)
    assert init.orthogonal_(module, gain) is module
    eye = torch.eye(hidden, dtype=DTYPE)
    x = torch.randn(hidden, 7, dtype=DTYPE)
    blocks = [b for name, b, _, _ in _weight_blocks(module) if name.startswith("weight_hh")]
    assert len(blocks) == 2 * 2 * _gates(module)
    for block in blocks:
        q = block.detach()
        torch.testing.assert_close(q.T @ q, gain ** 2 * eye, rtol=0, atol=1e-12)
        torch.testing.assert_close((q @ x).norm(dim=0), gain * x.norm(dim=0), rtol=1e-12, atol=0)
        moduli = np.abs(np.linalg.eigvals(q.numpy()))
        np.testing.assert_allclose(moduli, gain, rtol=1e-10)
    assert not torch.allclose(blocks[0], blocks[1])                 # each block its own Q


def test_orthogonal_leaves_input_weights_and_biases_alone():
    lstm = torch.nn.LSTM(5, 12, num_layers=2)
    before = {n: p.detach().clone() for n, p in lstm.named_parameters()}
    init.orthogonal_(lstm)
    for name, param in lstm.named_parameters():
        assert torch.equal(param, before[name]) != name.startswith("weight_hh"), name


def test_orthogonal_with_proj_size_gives_semi_orthogonal_blocks():
    hidden, proj = 20, 6
    lstm = torch.nn.LSTM(5, hidden, proj_size=proj, num_layers=2, bidirectional=True,
                         dtype=DTYPE)
    init.orthogonal_(lstm, gain=2.0)
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        for block in getattr(lstm, f"weight_hh{suffix}").detach().chunk(4):       # (H, P)
            torch.testing.assert_close(block.T @ block, 4.0 * torch.eye(proj, dtype=DTYPE),
                                       rtol=0, atol=1e-12)
        w_hr = getattr(lstm, f"weight_hr{suffix}").detach()                         # (P, H)
        torch.testing.assert_close(w_hr @ w_hr.T, 4.0 * torch.eye(proj, dtype=DTYPE),
                                   rtol=0, atol=1e-12)


def test_orthogonal_draws_are_haar_distributed_not_sign_biased():
    n = 400                                                         # Haar: √n·Q_ij ≈ N(0, 1)
    rnn = init.orthogonal_(torch.nn.RNN(1, n, dtype=DTYPE),
                           generator=torch.Generator().manual_seed(0))
    diagonal = math.sqrt(n) * rnn.weight_hh_l0.detach().diagonal()
    assert abs(diagonal.mean().item()) < 5 / math.sqrt(n)          # a raw QR biases its sign
    assert diagonal.std().item() == pytest.approx(1.0, abs=0.15)


def test_orthogonal_in_float32_is_orthogonal_to_float32_precision():
    rnn = init.orthogonal_(torch.nn.RNN(3, 256))
    q = rnn.weight_hh_l0.detach()
    torch.testing.assert_close(q.T @ q, torch.eye(256), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# identity_
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_identity_sets_scaled_identity_zero_biases_and_keeps_input_weights(scale):
    rnn = RNN(4, 9, num_layers=2, bidirectional=True, nonlinearity="relu")
    w_ih = {n: p.detach().clone() for n, p in rnn.named_parameters() if "weight_ih" in n}
    assert init.identity_(rnn, scale) is rnn
    for name, param in rnn.named_parameters():
        if name.startswith("weight_hh"):
            assert torch.equal(param, scale * torch.eye(9)), name
        elif name.startswith("bias"):
            assert torch.count_nonzero(param) == 0, name
        else:
            assert torch.equal(param, w_ih[name]), name


def test_irnn_copies_its_state_through_time_with_zero_input():
    rnn = init.identity_(torch.nn.RNN(3, 16, nonlinearity="relu", dtype=DTYPE))
    h0 = torch.rand(1, 2, 16, dtype=DTYPE)                          # ReLU keeps h >= 0 as is
    _, h_n = rnn(torch.zeros(200, 2, 3, dtype=DTYPE), h0)
    assert torch.equal(h_n, h0)


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, GRU])
def test_identity_rejects_gated_cells_naming_what_is_supported(cls):
    with pytest.raises(ValueError, match="torch.nn.RNN"):
        init.identity_(cls(3, 4))


# --------------------------------------------------------------------------------------------
# spectral_radius and set_spectral_radius_
# --------------------------------------------------------------------------------------------

def test_spectral_radius_matches_numpy_and_closed_forms():
    w = torch.randn(40, 40, dtype=DTYPE)
    expected = np.max(np.abs(np.linalg.eigvals(w.numpy())))
    assert init.spectral_radius(w) == pytest.approx(expected, rel=1e-10)
    w32 = torch.randn(30, 30)
    assert init.spectral_radius(w32) == pytest.approx(
        np.max(np.abs(np.linalg.eigvals(w32.numpy().astype(np.float64)))), rel=1e-10)
    assert init.spectral_radius(torch.diag(torch.tensor([0.5, -3.0, 2.0]))) == pytest.approx(3.0)
    rotation = torch.tensor([[0.0, -2.0], [2.0, 0.0]])              # eigenvalues ±2i
    assert init.spectral_radius(rotation) == pytest.approx(2.0)


@pytest.mark.parametrize("radius", [0.9, 1.0, 1.5, 0.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_set_spectral_radius_rescales_in_place_to_the_target(radius, dtype):
    w = torch.randn(50, 50, dtype=dtype)
    original, ptr = w.clone(), w.data_ptr()
    assert init.set_spectral_radius_(w, radius) is w
    assert w.data_ptr() == ptr
    moduli = torch.linalg.eigvals(w.to(torch.float64)).abs()
    assert moduli.max().item() == pytest.approx(radius, rel=1e-5, abs=1e-12)
    factor = radius / np.max(np.abs(np.linalg.eigvals(original.numpy().astype(np.float64))))
    torch.testing.assert_close(w, (factor * original.to(torch.float64)).to(dtype))


def test_set_spectral_radius_works_on_a_model_parameter():
    rnn = torch.nn.RNN(3, 32)
    init.set_spectral_radius_(rnn.weight_hh_l0, 1.1)
    assert rnn.weight_hh_l0.requires_grad and rnn.weight_hh_l0.grad_fn is None
    assert init.spectral_radius(rnn.weight_hh_l0) == pytest.approx(1.1, rel=1e-5)
    rnn(torch.randn(4, 2, 3))[0].sum().backward()


@pytest.mark.parametrize("fn", [init.spectral_radius, lambda w: init.set_spectral_radius_(w, 1)])
def test_spectral_functions_reject_non_square_and_non_tensors(fn):
    with pytest.raises(ValueError, match="weight.*square.*\\(3, 4\\)"):
        fn(torch.randn(3, 4))
    with pytest.raises(ValueError, match="weight"):
        fn(torch.randn(3))
    with pytest.raises(TypeError, match="weight.*Tensor.*list"):
        fn([[1.0, 0.0], [0.0, 1.0]])


def test_set_spectral_radius_rejects_bad_radius_and_zero_matrix():
    with pytest.raises(ValueError, match="radius.*-0.5"):
        init.set_spectral_radius_(torch.randn(3, 3), -0.5)
    with pytest.raises(ValueError, match="radius"):
        init.set_spectral_radius_(torch.randn(3, 3), float("nan"))
    with pytest.raises(TypeError, match="radius.*str"):
        init.set_spectral_radius_(torch.randn(3, 3), "1")
    with pytest.raises(ValueError, match="weight.*spectral radius 0"):
        init.set_spectral_radius_(torch.zeros(3, 3), 1.0)
    with pytest.raises(ValueError, match="weight.*finite"):
        init.set_spectral_radius_(torch.full((2, 2), float("inf")), 1.0)


# --------------------------------------------------------------------------------------------
# forget_bias_
# --------------------------------------------------------------------------------------------

def _effective_forget_bias(lstm: torch.nn.LSTM) -> torch.Tensor:
    """Read b_f^eff off torch's fused forward: with all weights 0 and the g-gate biases 0,
    one step from c_0 = 1 gives c_1 = σ(b_f)·1 + σ(b_i)·tanh(0) = σ(b_f), so b_f = logit(c_1).
    Returns (num_layers·D, H)."""
    probe = copy.deepcopy(lstm)
    hidden = probe.hidden_size
    with torch.no_grad():
        for name, param in probe.named_parameters():
            if name.startswith("weight"):
                param.zero_()
            else:
                param[2 * hidden:3 * hidden].zero_()                 # g rows: tanh(0) = 0
    layers = probe.num_layers * (2 if probe.bidirectional else 1)
    out = probe.proj_size or hidden
    h0 = torch.zeros(layers, 1, out, dtype=DTYPE)
    c0 = torch.ones(layers, 1, hidden, dtype=DTYPE)
    with torch.no_grad():
        _, (_, c1) = torch.nn.LSTM.forward(probe, torch.zeros(1, 1, probe.input_size,
                                                               dtype=DTYPE), (h0, c0))
    return torch.logit(c1[:, 0])


@pytest.mark.parametrize("value", [1.0, -2.5, 0.0, 4])
@pytest.mark.parametrize("kwargs", [{}, dict(num_layers=2, bidirectional=True),
                                    dict(num_layers=2, proj_size=3)])
def test_forget_bias_sets_the_effective_bias_seen_by_the_forward_pass(value, kwargs):
    lstm = LSTM(5, 7, dtype=DTYPE, **kwargs)
    assert init.forget_bias_(lstm, value) is lstm
    torch.testing.assert_close(_effective_forget_bias(lstm),
                               torch.full_like(_effective_forget_bias(lstm), float(value)),
                               rtol=0, atol=1e-9)


def test_filling_both_torch_biases_with_one_doubles_the_effective_forget_bias():
    lstm = torch.nn.LSTM(5, 7, dtype=DTYPE)                        # the pitfall, measured
    with torch.no_grad():
        lstm.bias_ih_l0[7:14].fill_(1.0)
        lstm.bias_hh_l0[7:14].fill_(1.0)
    torch.testing.assert_close(_effective_forget_bias(lstm),
                               torch.full((1, 7), 2.0, dtype=DTYPE), rtol=0, atol=1e-9)
    init.forget_bias_(lstm, 1.0)
    torch.testing.assert_close(_effective_forget_bias(lstm),
                               torch.full((1, 7), 1.0, dtype=DTYPE), rtol=0, atol=1e-9)


def test_forget_bias_leaves_other_gate_rows_and_weights_untouched():
    lstm = torch.nn.LSTM(5, 7, num_layers=2)
    before = {n: p.detach().clone() for n, p in lstm.named_parameters()}
    init.forget_bias_(lstm, 1.0)
    for name, param in lstm.named_parameters():
        if name.startswith("bias"):
            keep = torch.cat([torch.arange(0, 7), torch.arange(14, 28)])
            assert torch.equal(param[keep], before[name][keep]), name
        else:
            assert torch.equal(param, before[name]), name


def test_forget_bias_rejects_gru_bias_free_lstm_and_bad_values():
    with pytest.raises(ValueError, match="lstm.*LSTM only.*GRU"):
        init.forget_bias_(torch.nn.GRU(3, 4), 1.0)
    with pytest.raises(ValueError, match="lstm.*bias=True.*bias=False"):
        init.forget_bias_(torch.nn.LSTM(3, 4, bias=False), 1.0)
    with pytest.raises(ValueError, match="value.*nan"):
        init.forget_bias_(torch.nn.LSTM(3, 4), float("nan"))
    with pytest.raises(TypeError, match="value.*str"):
        init.forget_bias_(torch.nn.LSTM(3, 4), "1")


# --------------------------------------------------------------------------------------------
# Argument checks shared by the module-level functions
# --------------------------------------------------------------------------------------------

MODULE_FUNCTIONS = [init.xavier_, init.he_, init.orthogonal_, init.identity_, init.forget_bias_]


@pytest.mark.parametrize("fn", MODULE_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [torch.nn.Linear(3, 4), torch.nn.LSTMCell(3, 4), "lstm"],
                         ids=["Linear", "LSTMCell", "str"])
def test_module_functions_reject_non_recurrent_modules(fn, bad):
    with pytest.raises(TypeError, match="RNNBase.*got " + type(bad).__name__):
        fn(bad)


@pytest.mark.parametrize("fn,arg", [(init.orthogonal_, "gain"), (init.identity_, "scale")])
def test_gain_and_scale_must_be_non_negative_finite_numbers(fn, arg):
    rnn = torch.nn.RNN(3, 4)
    with pytest.raises(ValueError, match=f"{arg}.*>= 0.*-1"):
        fn(rnn, -1.0)
    with pytest.raises(ValueError, match=arg):
        fn(rnn, float("inf"))
    with pytest.raises(TypeError, match=f"{arg}.*bool"):
        fn(rnn, True)
