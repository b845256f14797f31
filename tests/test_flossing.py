"""rnnlab.flossing: differentiable Lyapunov exponents of a tanh/relu RNN, and flossing.

References: rnnlab.jacobians.lyapunov_exponents (closed-form step Jacobians, no graph) for the
values; central finite differences of the exponents for their gradient; the closed form of
the flossing loss; and, for floss_, the exponent measured afterwards by rnnlab.jacobians on
an input the flossing never saw.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.utils.parametrizations import orthogonal
from torch.nn.utils.rnn import pack_sequence

import rnnlab
from rnnlab import jacobians
from rnnlab.flossing import floss_, flossing_loss, lyapunov_exponents

DTYPE = torch.float64


def network(nonlinearity="tanh", batch_first=False, gain=1.0, H=6, I=2, seed=0):
    torch.manual_seed(seed)
    model = rnnlab.RNN(I, H, nonlinearity=nonlinearity, batch_first=batch_first, dtype=DTYPE)
    with torch.no_grad():
        model.weight_hh_l0.copy_(gain * torch.randn(H, H, dtype=DTYPE) / math.sqrt(H))
    return model


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("k", [None, 3])
def test_exponents_match_rnnlab_jacobians(nonlinearity, batch_first, k):
    model = network(nonlinearity, batch_first, gain=1.5)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 40, 2, generator=gen, dtype=DTYPE)                # (B, T, I)
    x = x if batch_first else x.transpose(0, 1)
    hx = torch.randn(1, 3, 6, generator=gen, dtype=DTYPE)
    got = lyapunov_exponents(model, x, hx, k)
    want = jacobians.lyapunov_exponents(model, x, hx, k)
    assert got.shape == want.shape == (3, k or 6)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


def test_exponents_unbatched_and_with_torch_module():
    torch.manual_seed(2)
    model = torch.nn.RNN(2, 5, dtype=DTYPE)
    x = torch.randn(30, 2, dtype=DTYPE)
    got = lyapunov_exponents(model, x, k=2)
    assert got.shape == (2,)
    assert torch.allclose(got, jacobians.lyapunov_exponents(model, x, k=2), rtol=1e-10)


@pytest.mark.parametrize("gain", [0.8, 2.5])           # contracting and chaotic
def test_exponent_gradients_match_central_differences(gain):
    model = network(gain=gain, seed=3)
    x = torch.randn(25, 2, 2, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    params = [model.weight_hh_l0, model.weight_ih_l0, model.bias_hh_l0]
    gen = torch.Generator().manual_seed(4)
    directions = [torch.randn(p.shape, generator=gen, dtype=DTYPE) for p in params]
    weights = torch.tensor([1.0, -0.5, 0.25], dtype=DTYPE)       # a mix of the top three

    def objective():
        return (lyapunov_exponents(model, x, k=3) * weights).sum()

    grads = torch.autograd.grad(objective(), params)
    analytic = sum((g * d).sum() for g, d in zip(grads, directions)).item()
    eps = 1e-6
    values = []
    with torch.no_grad():
        for sign in (1, -1):
            for p, d in zip(params, directions):
                p.add_(sign * eps * d)
            values.append(objective().item())
            for p, d in zip(params, directions):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic - numeric) < 1e-6 * max(1.0, abs(numeric)), (analytic, numeric)


def test_flossing_loss_is_the_sum_of_squares_averaged_over_the_batch():
    exponents = torch.tensor([[-0.5, -1.0], [0.25, 0.0]])
    assert flossing_loss(exponents).item() == pytest.approx((0.25 + 1.0 + 0.0625) / 2)
    assert flossing_loss(exponents, target=-0.5).item() == pytest.approx(
        (0 + 0.25 + 0.5625 + 0.25) / 2)


def test_floss_moves_the_top_exponent_toward_zero_on_unseen_input():
    torch.manual_seed(5)
    model = rnnlab.RNN(1, 16, batch_first=True)                 # default init: λ₁ < 0
    gen = torch.Generator().manual_seed(5)
    train = torch.randn(4, 40, 1, generator=gen)
    unseen = torch.randn(4, 300, 1, generator=gen)
    before = jacobians.lyapunov_exponents(model, unseen, k=1).mean().item()
    losses = floss_(model, train, 30, k=1, lr=0.03)
    after = jacobians.lyapunov_exponents(model, unseen, k=1).mean().item()
    assert len(losses) == 30 and losses[-1] < 0.1 * losses[0]
    assert before < -0.2 and abs(after) < 0.25 * abs(before), (before, after)


def test_floss_reaches_the_weights_behind_an_orthogonal_parametrization():
    torch.manual_seed(6)
    model = orthogonal(rnnlab.RNN(1, 8, batch_first=True), "weight_hh_l0")
    base = model.parametrizations.weight_hh_l0.original.detach().clone()
    floss_(model, torch.randn(2, 20, 1), 2, k=1, lr=0.05)
    W = model.weight_hh_l0.detach()
    assert not torch.equal(model.parametrizations.weight_hh_l0.original.detach(), base)
    assert torch.allclose(W.T @ W, torch.eye(8), atol=1e-5)            # still orthogonal


def test_floss_stops_on_a_non_finite_loss():
    model = network(seed=7)
    with torch.no_grad():
        model.weight_hh_l0.zero_()                              # every exponent is -inf
    losses = floss_(model, torch.randn(10, 1, 2, dtype=DTYPE), 5)
    assert len(losses) == 1 and math.isinf(losses[0])


def test_rejects_unsupported_models_and_arguments():
    with pytest.raises(TypeError, match="model: expected a single-layer"):
        lyapunov_exponents(torch.nn.LSTM(2, 3), torch.ones(4, 1, 2))
    with pytest.raises(ValueError, match="num_layers=2"):
        lyapunov_exponents(torch.nn.RNN(2, 3, num_layers=2), torch.ones(4, 1, 2))
    model = torch.nn.RNN(2, 3)
    with pytest.raises(ValueError, match=r"k: expected None or an int in \[1, S=3\]"):
        lyapunov_exponents(model, torch.ones(4, 1, 2), k=4)
    with pytest.raises(ValueError, match="input: expected"):
        lyapunov_exponents(model, torch.ones(4, 1, 5))
    with pytest.raises(ValueError, match="at least one time step"):
        lyapunov_exponents(model, torch.ones(0, 1, 2))
    with pytest.raises(ValueError, match="steps: expected an int >= 1"):
        floss_(model, torch.ones(4, 1, 2), 0)
    with pytest.raises(ValueError, match="^lr: expected a finite number > 0, got -1.0$"):
        floss_(model, torch.ones(4, 1, 2), 1, lr=-1.0)
    with pytest.raises(TypeError, match="exponents: expected a torch.Tensor"):
        flossing_loss([0.1])


@pytest.mark.parametrize("call, message", [
    (lambda m: lyapunov_exponents(m, torch.ones(4, 1, 2), k=2.0), "k: expected an int"),
    (lambda m: lyapunov_exponents(m, torch.ones(4, 1, 2, dtype=DTYPE)),
     r"input: expected dtype torch.float32 \(the dtype of the parameters\)"),
    (lambda m: lyapunov_exponents(m, pack_sequence([torch.ones(3, 2)])),
     "input: expected a torch.Tensor \\(sequences of one length\\), got PackedSequence"),
    (lambda m: floss_(m, torch.ones(4, 1, 2), 1.5), "steps: expected an int >= 1, got float"),
    (lambda m: floss_(m, torch.ones(4, 1, 2), 1, lr="0.1"), "lr: expected a real number"),
    (lambda m: flossing_loss(torch.ones(2), target=None), "target: expected a real number"),
])
def test_a_wrong_type_is_a_type_error_naming_the_argument(call, message):
    with pytest.raises(TypeError, match=message):
        call(torch.nn.RNN(2, 3))
