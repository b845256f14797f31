"""rnnlab.diagnostics against torch.autograd through an independent loop of torch's cells."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rnnlab.models
from rnnlab.diagnostics import (
    HiddenGradRecorder,
    grad_norm_history,
    hidden_grad_norms,
    hidden_grads,
    loss_slice,
)
from rnnlab.history import History
from rnnlab.tasks import adding_task, copy_task
from rnnlab.train import SequenceModel, fit, make_model

CELLS = {torch.nn.RNN: torch.nn.RNNCell, torch.nn.LSTM: torch.nn.LSTMCell,
         torch.nn.GRU: torch.nn.GRUCell}


def reference_grads(core, readout, x, target, loss_fn, many_to_many, layer=-1, state="h"):
    """∂L/∂h_t by adding zero perturbations δ_t to the states of a loop of torch cells (copied
    weights) and differentiating L with respect to the δ_t."""
    kind = next(k for k in CELLS if isinstance(core, k))
    cells = []
    for index in range(core.num_layers):
        extra = {"nonlinearity": core.nonlinearity} if kind is torch.nn.RNN else {}
        cell = CELLS[kind](core.input_size if index == 0 else core.hidden_size, core.hidden_size,
                           **extra).to(x.dtype)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).data.copy_(getattr(core, f"{name}_l{index}"))
        cells.append(cell)
    b, steps, h_size = x.shape[0], x.shape[1], core.hidden_size
    zeros = [torch.zeros(b, h_size, dtype=x.dtype) for _ in cells]
    h, c = list(zeros), list(zeros)
    deltas = [[torch.zeros(b, h_size, dtype=x.dtype, requires_grad=True) for _ in range(steps)]
              for _ in cells]
    tops = []
    for t in range(steps):
        inp = x[:, t]
        for i, cell in enumerate(cells):
            if kind is torch.nn.LSTM:
                h[i], c[i] = cell(inp, (h[i], c[i]))
                if state == "c":
                    c[i] = c[i] + deltas[i][t]
                else:
                    h[i] = h[i] + deltas[i][t]
            else:
                h[i] = cell(inp, h[i]) + deltas[i][t]
            inp = h[i]
        tops.append(inp)
    output = torch.stack(tops, dim=1)
    prediction = output if readout is None else readout(output if many_to_many else output[:, -1])
    loss = loss_fn(prediction, target)
    return torch.stack(torch.autograd.grad(loss, deltas[layer], allow_unused=True,
                                           materialize_grads=True))


def double_model(kind, output_size=3, many_to_many=False, **kwargs):
    torch.manual_seed(2)
    core = kind(4, 5, batch_first=True, **kwargs).double()
    return SequenceModel(core, output_size, many_to_many=many_to_many).double()


def mse(prediction, target):
    return torch.nn.functional.mse_loss(prediction, target)


def ce(prediction, target):
    return torch.nn.functional.cross_entropy(prediction.reshape(-1, prediction.shape[-1]),
                                             target.reshape(-1))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_many_to_one_matches_autograd_through_cell_loop(nonlinearity):
    model = double_model(torch.nn.RNN, nonlinearity=nonlinearity)
    x = torch.randn(3, 9, 4, dtype=torch.float64)
    y = torch.randn(3, 3, dtype=torch.float64)
    ours = hidden_grads(model, x, y, mse)
    expected = reference_grads(model.core, model.readout, x, y, mse, False)
    assert ours.shape == (9, 3, 5)
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("state", ["h", "c"])
def test_two_layer_lstm_many_to_many_matches_autograd(layer, state):
    model = double_model(torch.nn.LSTM, output_size=4, many_to_many=True, num_layers=2)
    x = torch.randn(2, 7, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (2, 7))
    ours = hidden_grads(model, x, y, ce, layer=layer, state=state)
    expected = reference_grads(model.core, model.readout, x, y, ce, True, layer, state)
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-14)


def test_bare_gru_core_uses_its_output_sequence():
    torch.manual_seed(3)
    core = torch.nn.GRU(4, 5, batch_first=True).double()
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    target = torch.randn(2, 6, 5, dtype=torch.float64)
    ours = hidden_grads(core, x, target, mse)
    expected = reference_grads(core, None, x, target, mse, True)
    assert torch.allclose(ours, expected, rtol=1e-10, atol=1e-14)


def test_time_major_core_gives_same_gradients():
    torch.manual_seed(3)
    core = torch.nn.RNN(4, 5).double()
    x = torch.randn(6, 2, 4, dtype=torch.float64)                  # (T, B, I)
    batch_first = torch.nn.RNN(4, 5, batch_first=True).double()
    batch_first.load_state_dict(core.state_dict())

    def loss(prediction):
        return prediction.sum()

    assert torch.allclose(hidden_grads(core, x, None, loss),
                          hidden_grads(batch_first, x.transpose(0, 1), None, loss))


@pytest.mark.parametrize("kind", [torch.nn.LSTM, torch.nn.GRU])
def test_unbatched_input_gives_the_gradients_of_a_batch_of_one(kind):
    model = double_model(kind, output_size=2)
    x = torch.randn(6, 4, dtype=torch.float64)                     # (T, I): no batch
    y = torch.randn(2, dtype=torch.float64)
    ours = hidden_grads(model, x, y, mse)
    expected = reference_grads(model.core, model.readout, x.unsqueeze(0), y.unsqueeze(0), mse,
                               False)
    assert ours.shape == (6, 5)
    assert torch.allclose(ours, expected[:, 0], rtol=1e-10, atol=1e-14)


def test_last_step_gradient_is_readout_transpose_times_loss_gradient():
    model = double_model(torch.nn.GRU, output_size=1)
    x = torch.randn(4, 5, 4, dtype=torch.float64)
    y = torch.randn(4, 1, dtype=torch.float64)
    with torch.no_grad():
        residual = model(x) - y                                     # (B, 1)
    expected = (2 * residual / residual.numel()) @ model.readout.weight   # (B, H)
    assert torch.allclose(hidden_grads(model, x, y, mse)[-1], expected, atol=1e-14)


def test_identity_relu_rnn_gradient_scales_as_power_of_recurrent_gain():
    # h_t = relu(W_ih x_t + a h_{t-1}) with positive inputs and weights stays in the linear
    # region, so ∂h_T/∂h_t = a^(T-t) I and ‖∂L/∂h_t‖ = a^(T-t) ‖∂L/∂h_T‖.
    a, steps = 0.8, 12
    core = torch.nn.RNN(2, 3, nonlinearity="relu", batch_first=True).double()
    with torch.no_grad():
        core.weight_hh_l0.copy_(a * torch.eye(3, dtype=torch.float64))
        core.weight_ih_l0.uniform_(0.1, 1.0)
        core.bias_ih_l0.zero_()
        core.bias_hh_l0.zero_()
    model = SequenceModel(core, 1).double()
    x = torch.rand(1, steps, 2, dtype=torch.float64) + 0.1
    norms = hidden_grad_norms(model, x, torch.zeros(1, 1, dtype=torch.float64), mse)
    lags = torch.arange(steps - 1, -1, -1, dtype=torch.float64)
    assert torch.allclose(norms, norms[-1] * a ** lags, rtol=1e-12)


def test_per_sample_norms_combine_to_batch_norm():
    model = double_model(torch.nn.LSTM)
    x = torch.randn(5, 6, 4, dtype=torch.float64)
    y = torch.randn(5, 3, dtype=torch.float64)
    total = hidden_grad_norms(model, x, y, mse)
    each = hidden_grad_norms(model, x, y, mse, per_sample=True)
    assert each.shape == (5, 6) and total.shape == (6,)
    assert torch.allclose((each ** 2).sum(0).sqrt(), total, rtol=1e-12)


def test_rnnlab_model_float32_matches_double_reference():
    task = adding_task(8)
    model = make_model(task, "lstm", 6, seed=0)
    x, y = task.sample(3, torch.Generator().manual_seed(0))
    ours = hidden_grads(model, x, y, task.loss)
    twin = SequenceModel(torch.nn.LSTM(2, 6, batch_first=True), 1).double()
    twin.load_state_dict(model.state_dict())
    expected = reference_grads(twin.core, twin.readout, x.double(), y.double(), task.loss, False)
    assert isinstance(model.core, rnnlab.models.LSTM)
    assert torch.allclose(ours.double(), expected, rtol=1e-4, atol=1e-7)


def test_parameter_grads_are_left_untouched():
    model = double_model(torch.nn.RNN)
    hidden_grads(model, torch.randn(2, 3, 4, dtype=torch.float64),
                 torch.zeros(2, 3, dtype=torch.float64), mse)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("model, kwargs, error, name", [
    (torch.nn.Linear(4, 3), {}, TypeError, "model"),
    (torch.nn.GRU(4, 5, batch_first=True, bidirectional=True), {}, ValueError, "model"),
    (torch.nn.GRU(4, 5, batch_first=True), {"state": "c"}, ValueError, "state"),
    (torch.nn.GRU(4, 5, batch_first=True), {"layer": 1}, ValueError, "layer"),
    (torch.nn.GRU(4, 5, batch_first=True), {"loss_fn": None}, TypeError, "loss_fn"),
])
def test_hidden_grads_rejects_bad_arguments(model, kwargs, error, name):
    arguments = {"loss_fn": lambda p: p.sum(), **kwargs}
    with pytest.raises(error, match=name):
        hidden_grads(model, torch.randn(2, 3, 4), **arguments)


def test_recorder_records_norms_during_fit():
    task = copy_task(2, 3, 3)
    model = make_model(task, "gru", 4, seed=0)
    x, y = task.sample(8, torch.Generator().manual_seed(9))
    recorder = HiddenGradRecorder(x, y, task.loss, every=3)
    fit(model, task, 7, callback=recorder, progress=False)
    assert recorder.steps == [3, 6] and recorder.norms.shape == (2, task.seq_len)
    with pytest.raises(ValueError, match="every"):
        HiddenGradRecorder(x, y, task.loss, every=0)


def test_grad_norm_history_mirrors_history():
    task = adding_task(5)
    history = fit(make_model(task, "rnn", 4, seed=0), task, 6, clip=("norm", 0.01),
                  progress=False)
    record = grad_norm_history(history)
    assert record.step.tolist() == [1, 2, 3, 4, 5, 6]
    assert record.norm.tolist() == history.grad_norm and record.loss.tolist() == history.loss
    assert record.clipped.tolist() == history.clipped
    summary = record.summary()
    assert summary["max"] == max(history.grad_norm)
    assert summary["median"] == pytest.approx(float(np.median(history.grad_norm)))
    assert summary["clip_fraction"] == history.clip_fraction
    with pytest.raises(TypeError, match="history"):
        grad_norm_history([])
    with pytest.raises(ValueError, match="history"):
        grad_norm_history(History())


def test_loss_slice_along_gradient_has_slope_of_gradient_norm():
    model = double_model(torch.nn.RNN)
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    y = torch.randn(3, 3, dtype=torch.float64)

    def closure(m):
        return mse(m(x), y)

    before = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(closure(model), list(model.parameters()))
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
    eps = 1e-5
    losses = loss_slice(model, closure, [-eps, 0.0, eps])
    assert losses[1] == pytest.approx(closure(model).detach().item(), rel=1e-15)
    assert (losses[2] - losses[0]) / (2 * eps) == pytest.approx(norm, rel=1e-6)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))


def test_loss_slice_random_and_given_directions():
    model = double_model(torch.nn.GRU)
    x = torch.randn(2, 4, 4, dtype=torch.float64)

    def closure(m):
        return m(x).pow(2).sum()

    a = loss_slice(model, closure, np.linspace(-1, 1, 5), "random",
                   generator=torch.Generator().manual_seed(0))
    b = loss_slice(model, closure, np.linspace(-1, 1, 5), "random",
                   generator=torch.Generator().manual_seed(0))
    assert np.array_equal(a, b) and a.shape == (5,)
    zero = [torch.zeros_like(p) for p in model.parameters()]
    flat = loss_slice(model, closure, [0.0, 3.0], zero)
    assert flat[0] == flat[1]
    with pytest.raises(ValueError, match="direction"):
        loss_slice(model, closure, [0.0], "sideways")
    with pytest.raises(ValueError, match="direction"):
        loss_slice(model, closure, [0.0], zero[:-1])
