"""rnnlab.lru: the linear recurrent unit and its parallel scan.

References: a plain Python loop over time with complex arithmetic written out (the scan, the
module's outputs and states, and their gradients); torch.autograd.functional.jacobian of the
real view of x_t -> x_T (the state Jacobians and their norms); the closed forms of the
parameterisation (|λ| = exp(-e^ν), arg λ = e^θ) and of the ring initialisation (|λ|² uniform
on [r_min², r_max²]); the stationary variance of a driven linear recurrence.
"""

from __future__ import annotations

import math

import pytest
import torch

from rnnlab.lru import LRU, scan

DTYPE = torch.float64


def loop(lambdas, inputs, h0=None):
    """x_t = λ_t x_{t-1} + b_t, one step per iteration."""
    a = torch.broadcast_to(lambdas, inputs.shape)
    x = torch.zeros_like(inputs[0]) if h0 is None else h0 + torch.zeros_like(inputs[0])
    states = []
    for t in range(inputs.shape[0]):
        x = a[t] * x + inputs[t]
        states.append(x)
    return torch.stack(states)


def complex_randn(*shape, generator):
    return torch.complex(torch.randn(*shape, generator=generator, dtype=DTYPE),
                         torch.randn(*shape, generator=generator, dtype=DTYPE))


@pytest.mark.parametrize("T", [1, 2, 7, 33, 64])
def test_scan_matches_loop_complex_time_invariant_with_initial_state(T):
    gen = torch.Generator().manual_seed(T)
    lambdas = 0.95 * torch.exp(1j * torch.rand(5, generator=gen, dtype=DTYPE) * 6)
    inputs = complex_randn(T, 3, 5, generator=gen)
    h0 = complex_randn(3, 5, generator=gen)
    expected = loop(lambdas, inputs, h0)
    assert torch.allclose(scan(lambdas, inputs, h0), expected, rtol=1e-12, atol=1e-12)


def test_scan_matches_loop_real_time_varying():
    gen = torch.Generator().manual_seed(1)
    lambdas = torch.rand(20, 2, 4, generator=gen, dtype=DTYPE) * 2 - 1      # one per step
    inputs = torch.randn(20, 2, 4, generator=gen, dtype=DTYPE)
    assert torch.allclose(scan(lambdas, inputs), loop(lambdas, inputs), rtol=1e-12,
                          atol=1e-12)


def test_scan_gradients_match_loop_gradients():
    gen = torch.Generator().manual_seed(2)
    lam_re = (0.9 * torch.rand(6, generator=gen, dtype=DTYPE)).requires_grad_()
    inputs = complex_randn(19, 2, 6, generator=gen).requires_grad_()
    weights = complex_randn(19, 2, 6, generator=gen)

    def grads(fn):
        lambdas = torch.complex(lam_re, 0.3 * lam_re)
        loss = (fn(lambdas, inputs) * weights).real.sum()
        return torch.autograd.grad(loss, (lam_re, inputs))

    for got, want in zip(grads(scan), grads(loop)):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)


def test_scan_rejects_bad_arguments():
    with pytest.raises(TypeError, match="inputs: expected a torch.Tensor"):
        scan(torch.ones(3), [1.0, 2.0])
    with pytest.raises(ValueError, match="lambdas: expected a shape broadcastable"):
        scan(torch.ones(4), torch.ones(5, 2, 3))
    with pytest.raises(ValueError, match="h0: expected a shape broadcastable"):
        scan(torch.ones(3), torch.ones(5, 2, 3), torch.ones(4, 3))
    with pytest.raises(ValueError, match="T >= 1"):
        scan(torch.ones(3), torch.ones(0, 3))


def test_eigenvalues_follow_the_parameterisation_and_stay_inside_the_unit_disc():
    lru = LRU(2, 400, dtype=DTYPE)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():                       # any real ν and θ an optimiser could reach
        lru.nu_log.copy_(torch.linspace(-30.0, 5.0, 400, dtype=DTYPE))
        lru.theta_log.copy_(torch.randn(400, generator=gen, dtype=DTYPE) * 3)
    lam = lru.eigenvalues()
    assert (lam.abs() < 1).all()
    assert torch.allclose(lam.abs(), torch.exp(-torch.exp(lru.nu_log)), rtol=1e-14)
    assert torch.allclose(lru.log_modulus(), -torch.exp(lru.nu_log))
    # arg λ = e^θ modulo 2π: compare on the unit circle
    assert torch.allclose(lam / lam.abs(), torch.exp(1j * torch.exp(lru.theta_log)),
                          atol=1e-12)


@pytest.mark.parametrize("r_min, r_max, max_phase", [(0.0, 1.0, 2 * math.pi),
                                                     (0.9, 0.999, math.pi / 10)])
def test_ring_init_is_uniform_in_area_on_the_ring(r_min, r_max, max_phase):
    torch.manual_seed(4)
    N = 20000
    lru = LRU(1, N, r_min=r_min, r_max=r_max, max_phase=max_phase, dtype=DTYPE)
    lam = lru.eigenvalues().detach()
    r2 = lam.abs() ** 2
    assert r2.min() >= r_min ** 2 - 1e-12 and r2.max() <= r_max ** 2 + 1e-12
    # U(a, b): mean (a + b)/2, standard deviation (b - a)/√12; allow 4 standard errors
    a, b = r_min ** 2, r_max ** 2
    assert abs(r2.mean().item() - (a + b) / 2) < 4 * (b - a) / math.sqrt(12 * N)
    assert abs(r2.var().item() - (b - a) ** 2 / 12) < 0.05 * (b - a) ** 2 / 12
    phase = torch.exp(lru.theta_log).detach()
    assert phase.min() >= 0 and phase.max() <= max_phase
    assert torch.allclose(torch.exp(2 * lru.gamma_log), 1 - r2, rtol=1e-10)


def reference_forward(lru, u, x0):
    """y_t = Re(C x_t) + D u_t with x_t = λ x_{t-1} + γ (B u_t), u time-major (T, B, I)."""
    lam = torch.exp(torch.complex(-torch.exp(lru.nu_log), torch.exp(lru.theta_log)))
    gamma = torch.exp(lru.gamma_log)
    Bm, Cm = torch.complex(lru.B_re, lru.B_im), torch.complex(lru.C_re, lru.C_im)
    x, ys, xs = x0, [], [x0]
    for t in range(u.shape[0]):
        x = lam * x + gamma * (u[t].to(Bm.dtype) @ Bm.T)
        xs.append(x)
        ys.append((x @ Cm.T).real + lru.D * u[t])
    return torch.stack(ys), torch.stack(xs)


@pytest.mark.parametrize("batch_first", [False, True])
def test_forward_matches_loop_with_states_and_initial_state(batch_first):
    torch.manual_seed(5)
    lru = LRU(3, 6, r_min=0.5, r_max=0.99, batch_first=batch_first, dtype=DTYPE)
    gen = torch.Generator().manual_seed(5)
    u = torch.randn(21, 4, 3, generator=gen, dtype=DTYPE)                   # (T, B, I)
    x0 = complex_randn(4, 6, generator=gen)
    y_ref, x_ref = reference_forward(lru, u, x0)
    y, h_n, states = lru(u.transpose(0, 1) if batch_first else u, x0, return_states=True)
    assert torch.allclose(y.transpose(0, 1) if batch_first else y, y_ref, atol=1e-12)
    assert torch.allclose(states, x_ref, atol=1e-12)
    assert torch.allclose(h_n, x_ref[-1], atol=1e-12)


def test_forward_unbatched_equals_batch_of_one():
    torch.manual_seed(6)
    lru = LRU(2, 5, dtype=DTYPE)
    u = torch.randn(9, 2, dtype=DTYPE)
    y, h_n, states = lru(u, return_states=True)
    y1, h1, s1 = lru(u.unsqueeze(1), return_states=True)
    assert y.shape == (9, 2) and h_n.shape == (5,) and states.shape == (10, 5)
    assert torch.equal(y, y1[:, 0]) and torch.equal(h_n, h1[0]) and torch.equal(states,
                                                                                 s1[:, 0])


def test_forward_gradients_match_loop_gradients():
    torch.manual_seed(7)
    lru = LRU(3, 4, r_min=0.8, r_max=0.99, dtype=DTYPE)
    u = torch.randn(15, 2, 3, dtype=DTYPE)
    w = torch.randn(15, 2, 3, dtype=DTYPE)
    params = list(lru.parameters())
    got = torch.autograd.grad((lru(u)[0] * w).sum(), params)
    x0 = torch.zeros(2, 4, dtype=torch.complex128)
    want = torch.autograd.grad((reference_forward(lru, u, x0)[0] * w).sum(), params)
    for g, r in zip(got, want):
        assert torch.allclose(g, r, rtol=1e-10, atol=1e-12)


def real_view_map(lru, u, t):
    """x_t (as 2N reals: Re then Im) -> x_T, driven by u[t:] (steps t+1..T)."""
    N = lru.hidden_size

    def f(z):
        x_t = torch.complex(z[:N], z[N:]).unsqueeze(0)
        if t == u.shape[0]:
            x_T = x_t[0]
        else:
            x_T = lru(u[t:], x_t)[1][0]
        return torch.cat((x_T.real, x_T.imag))
    return f


def test_state_jacobians_and_log_norms_match_autograd():
    torch.manual_seed(8)
    lru = LRU(2, 5, r_min=0.6, r_max=0.95, dtype=DTYPE)
    T = 12
    u = torch.randn(T, 1, 2, dtype=DTYPE)
    z = torch.randn(10, dtype=DTYPE)
    J = lru.state_jacobians(T).detach()
    log_norms = lru.jacobian_log_norms(T).detach()
    assert J.shape == (T + 1, 10, 10) and log_norms.shape == (T + 1,)
    for t in (0, 1, 5, T - 1, T):
        auto = torch.autograd.functional.jacobian(real_view_map(lru, u, t), z)
        assert torch.allclose(J[t], auto, atol=1e-12), t
        norm = torch.linalg.matrix_norm(auto, ord=2)
        assert abs(log_norms[t].item() - norm.log().item()) < 1e-10, t


def test_jacobian_log_norms_stay_finite_where_the_power_underflows():
    lru = LRU(1, 3, dtype=DTYPE)
    with torch.no_grad():
        lru.nu_log.copy_(torch.tensor([0.0, 1.0, 2.0], dtype=DTYPE))   # |λ| = e^-1, ...
    log_norms = lru.jacobian_log_norms(10000)
    assert torch.isfinite(log_norms).all()
    assert abs(log_norms[0].item() + 10000.0) < 1e-9          # slowest mode: e^{-1} per step


def test_gamma_normalisation_keeps_the_stationary_variance_of_the_drive():
    torch.manual_seed(9)
    lru = LRU(3, 4, r_min=0.5, r_max=0.9, dtype=DTYPE)
    gen = torch.Generator().manual_seed(9)
    u = torch.randn(120, 4000, 3, generator=gen, dtype=DTYPE)          # white, unit variance
    with torch.no_grad():
        x_T = lru(u)[1]                                                  # (B, N)
        Bm = torch.complex(lru.B_re, lru.B_im)
        drive_var = (Bm.abs() ** 2).sum(1)                               # E|(B u)_j|²
        measured = (x_T.abs() ** 2).mean(0)
    assert torch.allclose(measured, drive_var, rtol=0.08), (measured, drive_var)


def test_lru_rejects_bad_arguments():
    with pytest.raises(ValueError, match="r_min, r_max"):
        LRU(2, 3, r_min=0.5, r_max=0.4)
    with pytest.raises(ValueError, match="max_phase"):
        LRU(2, 3, max_phase=7.0)
    with pytest.raises(TypeError, match="hidden_size: expected an int"):
        LRU(2, 3.0)
    with pytest.raises(ValueError, match="input_size: expected an int >= 1"):
        LRU(0, 3)
    with pytest.raises(TypeError, match="r_max: expected a real number, got str"):
        LRU(2, 3, r_max="1")
    with pytest.raises(TypeError, match="batch_first: expected a bool, got int"):
        LRU(2, 3, batch_first=1)
    with pytest.raises(TypeError, match="hx: expected a torch.Tensor or None, got list"):
        LRU(2, 3)(torch.ones(4, 1, 2), [0.0, 0.0, 0.0])
    lru = LRU(2, 3)
    with pytest.raises(ValueError, match=r"input: expected \(T, B, 2\)"):
        lru(torch.ones(4, 1, 3))
    with pytest.raises(TypeError, match=r"input: expected dtype torch.float32 \(the dtype of"):
        lru(torch.ones(4, 1, 2, dtype=DTYPE))
    with pytest.raises(ValueError, match=r"hx: expected shape \(1, 3\)"):
        lru(torch.ones(4, 1, 2), torch.ones(2, 3))
    with pytest.raises(TypeError, match="input: expected a torch.Tensor"):
        lru([[1.0, 2.0]])
    with pytest.raises(ValueError, match="seq_len: expected an int >= 1"):
        lru.jacobian_log_norms(0)
