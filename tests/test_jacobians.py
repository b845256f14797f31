"""rnnlab.jacobians against torch's own modules run under torch.autograd, and known answers."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlab.jacobians import (
    jacobian_log_norms,
    lyapunov_exponents,
    qr_exponents,
    state_jacobians,
    step_jacobians,
)

F64 = torch.float64
MODES = ["tanh", "relu", "lstm", "gru"]


def _model(mode: str, input_size=3, hidden_size=5, dtype=F64, **kwargs):
    if mode in ("tanh", "relu"):
        model = torch.nn.RNN(input_size, hidden_size, nonlinearity=mode, **kwargs)
    else:
        model = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[mode](input_size, hidden_size,
                                                                    **kwargs)
    return model.to(dtype)


def _split(model, s: torch.Tensor):
    """State s (B, S) -> hx in torch's format."""
    if isinstance(model, torch.nn.LSTM):
        h, c = s.chunk(2, dim=-1)
        return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()
    return s.unsqueeze(0).contiguous()


def _run(model, x_tm: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Torch's fused module from state s (B, S) over time-major x (L, B, I): final state (B, S)."""
    x = x_tm.transpose(0, 1) if model.batch_first else x_tm
    _, hn = model(x, _split(model, s))
    return torch.cat((hn[0][0], hn[1][0]), -1) if isinstance(hn, tuple) else hn[0]


def _batch_diagonal(jac: torch.Tensor) -> torch.Tensor:
    """(B, S, B, S) Jacobian of a batched map -> the per-sample blocks (B, S, S)."""
    return torch.diagonal(jac, dim1=0, dim2=2).permute(2, 0, 1)


def _reference_states(model, x_tm, s0):
    """s_0..s_T by torch's module, one prefix at a time: list of (B, S)."""
    return [s0] + [_run(model, x_tm[:t], s0) for t in range(1, x_tm.shape[0] + 1)]


def _setup(mode, batch_first, with_hx, T=6, B=3, H=5, I=3):
    model = _model(mode, I, H, batch_first=batch_first)
    S = 2 * H if mode == "lstm" else H
    x_tm = torch.randn(T, B, I, dtype=F64)
    s0 = 0.5 * torch.randn(B, S, dtype=F64) if with_hx else torch.zeros(B, S, dtype=F64)
    hx = _split(model, s0) if with_hx else None
    x = x_tm.transpose(0, 1) if batch_first else x_tm
    return model, x, x_tm, s0, hx


def _assert_rel(actual, expected, rel=1e-6):
    torch.testing.assert_close(actual, expected, rtol=rel,
                               atol=rel * float(expected.abs().max().clamp_min(1e-300)))


# ------------------------------------------------------------------------------------------
# Against torch.autograd on torch's own modules
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_step_jacobians_match_autograd_of_one_module_step(mode, batch_first, with_hx):
    model, x, x_tm, s0, hx = _setup(mode, batch_first, with_hx)
    got = step_jacobians(model, x, hx)
    states = _reference_states(model, x_tm, s0)
    assert got.shape == (x_tm.shape[0], x_tm.shape[1], s0.shape[1], s0.shape[1])
    for t in range(1, x_tm.shape[0] + 1):
        jac = torch.autograd.functional.jacobian(lambda s, t=t: _run(model, x_tm[t - 1:t], s),
                                                 states[t - 1])
        _assert_rel(got[t - 1], _batch_diagonal(jac))


@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_state_jacobians_match_autograd_of_module_from_each_state(mode, batch_first, with_hx):
    model, x, x_tm, s0, hx = _setup(mode, batch_first, with_hx)
    T = x_tm.shape[0]
    got = state_jacobians(model, x, hx)
    states = _reference_states(model, x_tm, s0)
    assert got.shape == (T + 1, x_tm.shape[1], s0.shape[1], s0.shape[1])
    for t in range(T):
        jac = torch.autograd.functional.jacobian(lambda s, t=t: _run(model, x_tm[t:], s),
                                                 states[t])
        _assert_rel(got[t], _batch_diagonal(jac))
    torch.testing.assert_close(got[T], torch.eye(s0.shape[1], dtype=F64).expand_as(got[T]),
                               rtol=0, atol=0)


def test_jacobians_of_a_model_without_biases_match_autograd():
    model, x, x_tm, s0, hx = _setup("gru", False, True)
    model = torch.nn.GRU(3, 5, bias=False).to(F64)
    jac = torch.autograd.functional.jacobian(lambda s: _run(model, x_tm, s), s0)
    _assert_rel(state_jacobians(model, x, hx)[0], _batch_diagonal(jac))


def test_subclass_of_torch_module_is_accepted():
    class MyLSTM(torch.nn.LSTM):
        pass

    model = MyLSTM(3, 4).to(F64)
    x_tm = torch.randn(5, 2, 3, dtype=F64)
    s0 = torch.zeros(2, 8, dtype=F64)
    jac = torch.autograd.functional.jacobian(lambda s: _run(model, x_tm, s), s0)
    _assert_rel(state_jacobians(model, x_tm)[0], _batch_diagonal(jac))


# ------------------------------------------------------------------------------------------
# Log-norms
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_log_norms_match_log_spectral_norm_of_autograd_products(mode):
    model, x, x_tm, s0, hx = _setup(mode, False, True, T=8, H=6)
    states = _reference_states(model, x_tm, s0)
    expected = []
    for t in range(x_tm.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda s, t=t: _run(model, x_tm[t:], s),
                                                 states[t])
        expected.append(torch.linalg.matrix_norm(_batch_diagonal(jac), ord=2).log())
    expected.append(torch.zeros(x_tm.shape[1], dtype=F64))
    _assert_rel(jacobian_log_norms(model, x, hx), torch.stack(expected))


@pytest.mark.parametrize("mode", ["tanh", "lstm", "gru"])
def test_log_norms_match_plain_float64_product_over_hundreds_of_steps(mode):
    # long enough that the renormalised products become nearly rank-one (the certified
    # shortcut for the top eigenvalue) and short enough that the plain product stays in range
    model = _model(mode, 3, 16)
    x = torch.randn(300, 2, 3, dtype=F64)
    plain = state_jacobians(model, x)
    expected = torch.linalg.matrix_norm(plain, ord=2).log()
    assert expected.isfinite().all()
    _assert_rel(jacobian_log_norms(model, x), expected, rel=1e-9)


def test_log_norms_stay_finite_where_float32_product_underflows():
    torch.manual_seed(1)
    model = _model("tanh", 4, 32, dtype=torch.float32)
    with torch.no_grad():
        model.weight_hh_l0.mul_(0.5)                      # contracting: ≈ e^{-1}/step
    x = torch.randn(10_000, 1, 4)
    got = jacobian_log_norms(model, x)
    assert got.dtype == torch.float32 and got.isfinite().all()
    assert got[0, 0] < -2000                              # e^{-2000}: far below float32's range
    assert (state_jacobians(model, x[-200:]) == 0).all(dim=(-1, -2))[0]   # plain one: zero
    # the same computation in float64 (its own trajectory and products)
    ref = jacobian_log_norms(model.double(), x.double())
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-2)


def test_log_norms_stay_finite_where_plain_product_overflows():
    model = _model("tanh", 2, 32)
    with torch.no_grad():
        torch.nn.init.orthogonal_(model.weight_hh_l0, gain=3.0)  # chaotic: products explode
    x = torch.randn(5000, 1, 2, dtype=F64)
    got64 = jacobian_log_norms(model, x)
    got32 = jacobian_log_norms(model.float(), x.float())
    assert got64.isfinite().all() and got32.isfinite().all()
    assert got64[0, 0] > 1000                             # beyond float64's range (e^709)
    # float32 and float64 trajectories part ways (chaos), their growth rate does not
    assert abs(got32[0, 0].item() / got64[0, 0].item() - 1) < 0.05


def test_log_norms_are_minus_inf_exactly_where_the_product_is_zero():
    model = _model("relu", 3, 4)
    with torch.no_grad():
        model.bias_hh_l0.fill_(-100.0)                    # every unit dead at every step
    got = jacobian_log_norms(model, torch.randn(5, 2, 3, dtype=F64))
    assert (got[:-1] == -math.inf).all() and (got[-1] == 0).all()


def test_log_norms_of_a_batch_where_one_product_dies_midway_match_plain_products():
    """Across many chunks (the product is compressed to its numerical rank between them), one
    sequence's product is exactly zero before a step that kills every unit, while the other's
    keeps full rank (a cyclic permutation with unequal gains, every unit active: the product
    returns to a multiple of I every six steps, and in between its top direction moves)."""
    model = _model("relu", 1, 6)
    with torch.no_grad():
        model.weight_ih_l0.fill_(-1.0)
        model.bias_ih_l0.fill_(0.5)
        model.bias_hh_l0.zero_()
        cycle = torch.eye(6, dtype=F64).roll(1, dims=0)
        model.weight_hh_l0.copy_(cycle * torch.tensor([0.9, 0.3, 0.9, 0.6, 0.9, 0.3],
                                                      dtype=F64))
    x = 0.1 * torch.randn(300, 2, 1, dtype=F64)
    x[150, 0, 0] = 100.0                                  # step 151 kills every unit of seq 0
    got = jacobian_log_norms(model, x)
    plain = torch.linalg.matrix_norm(state_jacobians(model, x), ord=2).log()
    assert (got[:151, 0] == -math.inf).all() and got[151:, 0].isfinite().all()
    assert got[:, 1].isfinite().all()
    _assert_rel(got[151:, 0], plain[151:, 0], rel=1e-9)
    _assert_rel(got[:, 1], plain[:, 1], rel=1e-9)


def test_log_norms_are_finite_with_some_relu_units_dead():
    model = _model("relu", 3, 6)
    with torch.no_grad():
        model.bias_hh_l0[:3] = -100.0                     # half the units dead
        model.bias_hh_l0[3:] = 5.0                        # the other half always active
    got = jacobian_log_norms(model, torch.randn(50, 2, 3, dtype=F64))
    assert got.isfinite().all()


# ------------------------------------------------------------------------------------------
# Lyapunov exponents: known answers
# ------------------------------------------------------------------------------------------

def _quiet_rnn(mode, weight_hh, input_size=2):
    """A model with W_hh given, zero biases; inputs 1e-6 keep tanh in its linear regime."""
    model = _model(mode, input_size, weight_hh.shape[0])
    with torch.no_grad():
        model.weight_hh_l0.copy_(weight_hh)
        model.bias_ih_l0.zero_()
        model.bias_hh_l0.zero_()
    return model


def test_lyapunov_of_half_orthogonal_tanh_rnn_are_all_log_half():
    Q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=F64))
    model = _quiet_rnn("tanh", 0.5 * Q)
    got = lyapunov_exponents(model, 1e-6 * torch.randn(500, 3, 2, dtype=F64))
    assert got.shape == (3, 8)
    torch.testing.assert_close(got, torch.full((3, 8), math.log(0.5), dtype=F64), rtol=0,
                               atol=1e-6)


def test_lyapunov_of_half_permutation_relu_rnn_are_all_log_half():
    P = torch.eye(6, dtype=F64)[torch.randperm(6)]        # orthogonal and non-negative
    model = _quiet_rnn("relu", 0.5 * P)
    with torch.no_grad():
        model.bias_hh_l0.fill_(1.0)                       # keeps every unit active
    got = lyapunov_exponents(model, torch.randn(200, 2, 2, dtype=F64).abs())
    torch.testing.assert_close(got, torch.full((2, 6), math.log(0.5), dtype=F64), rtol=0,
                               atol=1e-9)


def test_lyapunov_of_diagonal_rnn_are_sorted_log_abs_diagonal():
    d = torch.tensor([0.3, -0.9, 0.6, -0.1, 0.8], dtype=F64)
    model = _quiet_rnn("tanh", torch.diag(d))
    got = lyapunov_exponents(model, 1e-6 * torch.randn(2000, 1, 2, dtype=F64), k=3)
    expected = d.abs().log().sort(descending=True).values[:3]
    # a generic start converges at rate O(1/T): the transient of the first steps, averaged
    torch.testing.assert_close(got, expected.unsqueeze(0), rtol=0, atol=2e-3)


def test_lyapunov_of_linear_regime_are_log_eigenvalue_moduli_of_non_normal_w_hh():
    W = 0.3 * torch.randn(6, 6, dtype=F64)
    model = _quiet_rnn("tanh", W)                         # zero input, s_0 = 0: J_t = W exactly
    got = lyapunov_exponents(model, torch.zeros(3000, 2, dtype=F64))
    expected = torch.linalg.eigvals(W).abs().log().sort(descending=True).values
    assert got.shape == (6,)                              # unbatched input: no B dimension
    torch.testing.assert_close(got, expected, rtol=0, atol=5e-3)


def test_lyapunov_of_lstm_without_recurrent_weights_are_log_forget_gates():
    H = 4
    model = _model("lstm", 2, H)
    b_f = torch.tensor([0.5, 2.0, -1.0, 1.0], dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.zero_()
        model.bias_ih_l0.zero_()
        model.bias_hh_l0.zero_()
        model.bias_hh_l0[H:2 * H] = b_f
    # J_t = [[0, *], [0, diag(f)]] with f = σ(b_f) for zero input: exponents log f, then -inf
    got = lyapunov_exponents(model, torch.zeros(2000, 1, 2, dtype=F64))
    expected = torch.sigmoid(b_f).log().sort(descending=True).values
    torch.testing.assert_close(got[0, :H], expected, rtol=0, atol=2e-3)
    assert (got[0, H:] < -30).all()                       # -inf up to rounding


def test_lyapunov_of_gru_without_recurrent_weights_are_log_update_gates():
    H = 3
    model = _model("gru", 2, H)
    b_z = torch.tensor([-1.0, 3.0, 0.5], dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.zero_()
        model.bias_ih_l0.zero_()
        model.bias_hh_l0.zero_()
        model.bias_hh_l0[H:2 * H] = b_z                   # J_t = diag(z), z = σ(b_z)
    got = lyapunov_exponents(model, torch.zeros(2000, 2, 2, dtype=F64))
    expected = torch.sigmoid(b_z).log().sort(descending=True).values
    torch.testing.assert_close(got, expected.expand(2, H), rtol=0, atol=2e-3)


@pytest.mark.parametrize("mode", ["tanh", "gru"])
def test_lyapunov_exponents_sum_to_mean_log_abs_det_of_autograd_step_jacobians(mode):
    model, x, x_tm, s0, hx = _setup(mode, False, True, T=40, B=2, H=4)
    states = _reference_states(model, x_tm, s0)
    log_det = 0.0
    for t in range(1, 41):
        jac = torch.autograd.functional.jacobian(lambda s, t=t: _run(model, x_tm[t - 1:t], s),
                                                 states[t - 1])
        log_det = log_det + torch.linalg.slogdet(_batch_diagonal(jac)).logabsdet
    got = lyapunov_exponents(model, x, hx)
    _assert_rel(got.sum(-1), log_det / 40, rel=1e-9)
    assert (got[:, :-1] >= got[:, 1:]).all()              # descending


# ------------------------------------------------------------------------------------------
# Input forms, dtypes, devices
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["tanh", "lstm"])
def test_unbatched_input_drops_the_batch_dimension(mode):
    model = _model(mode, 3, 4)
    S = 8 if mode == "lstm" else 4
    x = torch.randn(7, 3, dtype=F64)
    s0 = torch.randn(1, S, dtype=F64)
    hx = _split(model, s0)
    hx_unbatched = tuple(h[:, 0] for h in hx) if mode == "lstm" else hx[:, 0]
    for fn, shape in ((step_jacobians, (7, S, S)), (state_jacobians, (8, S, S)),
                      (jacobian_log_norms, (8,)), (lyapunov_exponents, (S,))):
        got = fn(model, x, hx_unbatched)
        assert got.shape == shape
        torch.testing.assert_close(got, fn(model, x.unsqueeze(1), hx).squeeze(
            0 if fn is lyapunov_exponents else 1))


def test_float32_model_matches_float64_on_short_sequences():
    model = _model("lstm", 3, 5)
    x = torch.randn(20, 2, 3, dtype=F64)
    got = state_jacobians(model.float(), x.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), state_jacobians(model.double(), x),
                               rtol=1e-4, atol=1e-6)


def test_results_are_detached_from_autograd():
    model = _model("gru", 3, 4)
    x = torch.randn(5, 2, 3, dtype=F64, requires_grad=True)
    assert not state_jacobians(model, x).requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", MODES)
def test_cuda_matches_cpu(mode):
    model = _model(mode, 3, 8)
    x = torch.randn(30, 2, 3, dtype=F64)
    for fn in (state_jacobians, jacobian_log_norms, lyapunov_exponents):
        got = fn(model.cuda(), x.cuda())
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), fn(model.cpu(), x))


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, what", [
    (torch.nn.RNN(3, 4, num_layers=2), "num_layers=2"),
    (torch.nn.GRU(3, 4, bidirectional=True), "bidirectional=True"),
    (torch.nn.LSTM(3, 4, proj_size=2), "proj_size=2"),
])
def test_unsupported_models_raise_value_error_naming_what_is_supported(model, what):
    with pytest.raises(ValueError, match=f"single-layer unidirectional.*got {what}"):
        step_jacobians(model, torch.randn(5, 1, 3))


def test_non_recurrent_module_raises_type_error():
    with pytest.raises(TypeError, match="model: expected"):
        state_jacobians(torch.nn.Linear(3, 4), torch.randn(5, 1, 3))


@pytest.mark.parametrize("input, exc, match", [
    (torch.randn(5, 1, 1, 3), ValueError, r"input: expected \(T, B, I\)"),
    (torch.randn(5, 1, 2), ValueError, "input_size=3"),
    (torch.randn(5, 1, 3, dtype=F64), TypeError, "input: expected dtype torch.float32"),
    ([[0.0, 1.0, 2.0]], TypeError, "input: expected a torch.Tensor"),
])
def test_bad_input_raises(input, exc, match):
    with pytest.raises(exc, match=match):
        jacobian_log_norms(torch.nn.RNN(3, 4), input)


@pytest.mark.parametrize("model, hx, exc, match", [
    (torch.nn.RNN(3, 4), torch.zeros(1, 2, 4), ValueError, r"hx: expected shape \(1, 1, 4\)"),
    (torch.nn.RNN(3, 4), torch.zeros(1, 1, 4, dtype=F64), TypeError, "hx: expected dtype"),
    (torch.nn.LSTM(3, 4), torch.zeros(1, 1, 4), TypeError, r"hx: expected a tuple \(h_0, c_0\)"),
    (torch.nn.LSTM(3, 4), (torch.zeros(1, 1, 4), torch.zeros(1, 1, 5)), ValueError,
     r"hx\[1\]: expected shape \(1, 1, 4\)"),
])
def test_bad_hx_raises(model, hx, exc, match):
    with pytest.raises(exc, match=match):
        state_jacobians(model, torch.randn(5, 1, 3), hx)


@pytest.mark.parametrize("k, error, match", [
    (0, ValueError, r"k: expected None or an int in \[1, S=4\], got 0"),
    (5, ValueError, r"k: expected None or an int in \[1, S=4\], got 5"),
    (2.0, TypeError, "k: expected an int, got float"),
    (True, TypeError, "k: expected an int, got bool"),
])
def test_lyapunov_rejects_k_outside_one_to_s(k, error, match):
    with pytest.raises(error, match=match):
        lyapunov_exponents(torch.nn.RNN(3, 4), torch.randn(5, 1, 3), k=k)


def test_qr_exponents_of_a_constant_map_are_its_log_eigenvalue_moduli_and_differentiable():
    # J_t = A = V diag(d) V^-1 for every t: the exponents are log|d| (to O(1/T)), and the
    # recurrence records a graph when asked: d/dA of λ₁ is the derivative of log|d₁| in A
    gen = torch.Generator().manual_seed(0)
    V = torch.eye(4, dtype=F64) + 0.3 * torch.randn(4, 4, generator=gen, dtype=F64)
    d = torch.tensor([1.5, -0.8, 0.4, 0.1], dtype=F64)
    A = (V @ torch.diag(d) @ torch.linalg.inv(V)).requires_grad_()
    T = 500                                     # the transient of Q_0 costs O(1/T): 3e-3 here
    exponents = qr_exponents((A.matmul for _ in range(T)), 4, None, A)      # (4,)
    assert torch.allclose(exponents.detach(), d.abs().log(), atol=1e-2)
    (grad,) = torch.autograd.grad(exponents[0], A)
    # ∂ log|λ₁| / ∂A = (u vᵀ) / λ₁ with u, v the right and left eigenvectors, vᵀu = 1
    u, w = V[:, 0], torch.linalg.inv(V)[0]
    assert torch.allclose(grad, torch.outer(w, u) / d[0], atol=2e-2)        # 9e-3 here
