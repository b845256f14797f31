"""rnnlab.long_range: recipes against torch's own modules and closed forms, a cell against fit
and evaluate called by hand, the solved criterion as defined, JSON-safe summaries."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnlab import long_range
from rnnlab.long_range import (
    RECIPES,
    SOLVED_FRACTION,
    Recipe,
    build_model,
    held_out_set,
    make_task,
    run_cell,
)
from rnnlab.tasks import adding_task, sequential_digits
from rnnlab.train import SequenceModel, evaluate, fit

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name, cls, extra", [("tanh", torch.nn.RNN, {}),
                                               ("lstm", torch.nn.LSTM, {}),
                                               ("gru", torch.nn.GRU, {})])
def test_default_recipes_keep_pytorchs_initialisation(name, cls, extra):
    task = adding_task(10)
    net = build_model(task, name, 8, seed=3)
    torch.manual_seed(3)
    reference = cls(2, 8, batch_first=True, **extra)
    for key, value in reference.state_dict().items():
        assert torch.equal(net.core.state_dict()[key], value), key


def test_irnn_recipe_is_relu_with_identity_recurrence_and_zero_biases():
    net = build_model(adding_task(10), "irnn", 8, seed=3)
    torch.manual_seed(3)
    reference = torch.nn.RNN(2, 8, nonlinearity="relu", batch_first=True)
    assert net.core.nonlinearity == "relu"
    assert torch.equal(net.core.weight_hh_l0, torch.eye(8))
    assert not net.core.bias_ih_l0.any() and not net.core.bias_hh_l0.any()
    assert torch.equal(net.core.weight_ih_l0, reference.weight_ih_l0)   # input weights as drawn


def test_copy_task_spans_seq_len_with_baseline_k_ln_n_over_t():
    for seq_len in (11, 30, 100):
        task = make_task("copy", seq_len)
        x, y = task.sample(2, torch.Generator().manual_seed(0))
        k, n = long_range.COPY_REMEMBER, long_range.COPY_SYMBOLS
        assert x.shape == (2, seq_len, n + 2) and y.shape == (2, seq_len)
        assert math.isclose(task.baseline_loss, k * math.log(n) / seq_len, rel_tol=1e-12)
    with pytest.raises(ValueError, match="seq_len"):
        make_task("copy", 10)


def test_digits_exist_only_at_length_64_and_are_judged_on_the_test_split():
    with pytest.raises(ValueError, match="seq_len: expected 64"):
        make_task("digits", 50)
    x, y = held_out_set("digits", 64)
    x_test, y_test = sequential_digits("test")
    assert torch.equal(x, x_test) and torch.equal(y, y_test)


def test_held_out_set_is_fixed_and_not_a_training_batch():
    x1, y1 = held_out_set("adding", 20)
    x2, y2 = held_out_set("adding", 20)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (long_range.HELD_OUT_SIZE, 20, 2)
    first_batch, _ = adding_task(20).sample(32, torch.Generator().manual_seed(0))
    assert not torch.equal(x1[:32], first_batch)


def test_cell_equals_fit_and_evaluate_called_by_hand():
    steps, seed = 30, 2
    result = run_cell("adding", "lstm", 8, seed, 1.0, steps=steps, hidden_size=8,
                      batch_size=16, eval_every=10)
    task = adding_task(8)
    torch.manual_seed(seed)
    net = SequenceModel(torch.nn.LSTM(2, 8, batch_first=True), 1)    # draws as make_model
    fit(net, task, steps, batch_size=16, lr=1e-2, clip=("norm", 1.0), seed=seed,
        progress=False)
    stream = torch.Generator().manual_seed(long_range.HELD_OUT_SEED)
    held_x, held_y = task.sample(long_range.HELD_OUT_SIZE, stream)
    loss, _ = evaluate(net, task, held_x, held_y)
    assert not result["solved"] and result["steps_run"] == steps
    assert result["eval_step"] == [10, 20, 30]
    assert result["final_loss"] == pytest.approx(loss, rel=1e-6)
    assert result["eval_loss"][-1] == result["final_loss"]


def test_cell_stops_at_the_first_held_out_loss_below_the_threshold():
    result = run_cell("adding", "lstm", 4, 0, 1.0, steps=600, hidden_size=8, eval_every=20)
    assert result["threshold"] == pytest.approx(SOLVED_FRACTION["adding"] / 6)
    assert result["solved"] and result["stopped"] == "callback"
    assert result["steps_to_solve"] == result["steps_run"] == result["eval_step"][-1]
    assert result["steps_to_solve"] % 20 == 0
    assert result["eval_loss"][-1] <= result["threshold"]
    assert all(loss > result["threshold"] for loss in result["eval_loss"][:-1])


def test_cell_is_deterministic_except_its_cpu_time():
    runs = [run_cell("temporal_order", "gru", 12, 1, None, steps=20, hidden_size=6,
                     eval_every=10) for _ in range(2)]
    for run in runs:
        run.pop("cpu_seconds")
    assert runs[0] == runs[1]
    assert runs[0]["final_accuracy"] is not None and 0 <= runs[0]["final_accuracy"] <= 1


def test_diverging_cell_is_reported_and_its_summary_is_strict_json(monkeypatch):
    monkeypatch.setitem(RECIPES, "irnn", Recipe("rnn", "relu", identity=True, lr=1e4))
    result = run_cell("adding", "irnn", 30, 0, None, steps=200, hidden_size=8, eval_every=5)
    assert result["stopped"] == "nonfinite" and not result["solved"]
    assert result["steps_run"] < 200 and result["steps_to_solve"] is None
    json.dumps(result, allow_nan=False)                       # NaN/inf became null


@pytest.mark.parametrize("kwargs, error, match", [
    ({"task": "sorting"}, ValueError, "task: expected one of"),
    ({"model": "transformer"}, ValueError, "model: expected one of"),
    ({"seq_len": 20.0}, TypeError, "seq_len: expected an int"),
    ({"seed": -1}, ValueError, "seed: expected an int >= 0"),
    ({"clip": 0}, ValueError, "clip: expected a finite number > 0"),
    ({"clip": "1"}, TypeError, "clip: expected a real number"),
    ({"steps": 0}, ValueError, "steps: expected an int >= 1"),
])
def test_run_cell_checks_its_arguments_first(kwargs, error, match):
    arguments = {"task": "adding", "model": "lstm", "seq_len": 20, "seed": 0, "clip": None,
                 "steps": 1}
    arguments.update(kwargs)
    steps = arguments.pop("steps")
    with pytest.raises(error, match=match):
        run_cell(**arguments, steps=steps)


def test_input_gradient_of_a_linear_recurrence_decays_by_its_factor_per_step_of_lag():
    # ReLU with non-negative weights, biases and inputs never clips: h_t = a h_{t-1} + W_ih x_t,
    # so dL_T/dx_1 = dL_T/dx_T * a^(T-1) for every sequence and r = (T - 1) log10(a).
    task = adding_task(30)
    net = build_model(task, "irnn", 6, seed=0)
    with torch.no_grad():
        net.core.weight_hh_l0.copy_(0.5 * torch.eye(6))
        net.core.weight_ih_l0.abs_()
        net.core.bias_ih_l0.fill_(0.1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = task.sample(64, torch.Generator().manual_seed(1))
    assert long_range.input_reach(net, task, x, y) == pytest.approx(29 * math.log10(0.5),
                                                                     rel=1e-9)
    norms = long_range.input_grad_norms(net, task, x, y)                      # t = 1..30
    lags = torch.arange(29, -1, -1, dtype=torch.float64)
    assert torch.allclose(norms / norms[-1], 0.5 ** lags, rtol=1e-9)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_input_reach_of_the_copy_task_follows_the_last_output_only():
    task = make_task("copy", 20)
    net = build_model(task, "gru", 6, seed=0)
    x, y = task.sample(16, torch.Generator().manual_seed(1))
    x64 = x.double().requires_grad_()
    twin = build_model(task, "gru", 6, seed=0).double()
    loss = torch.nn.functional.cross_entropy(twin(x64)[:, -1], y[:, -1])
    (grad,) = torch.autograd.grad(loss, x64)
    norms = grad.norm(dim=(0, 2))
    expected = math.log10(norms[0].item() / norms[-1].item())
    assert long_range.input_reach(net, task, x, y) == pytest.approx(expected, rel=1e-9)


def test_summary_counts_solved_seeds_and_takes_medians_per_cell():
    def cell(seed, model, solved_at, loss, stopped="steps"):
        return {"task": "adding", "seq_len": 50, "model": model, "clip": None, "seed": seed,
                "solved": solved_at is not None, "steps_to_solve": solved_at,
                "final_loss": loss, "baseline": 0.5, "stopped": stopped}
    cells = [cell(0, "lstm", 100, 0.01), cell(1, "lstm", None, 0.4), cell(2, "lstm", 300, 0.02),
             cell(0, "tanh", None, 0.5), cell(1, "tanh", None, 1e30, "nonfinite"),
             cell(2, "tanh", None, 0.45), cell(0, "gru", None, None, "nonfinite")]
    lstm, tanh, gru = long_range.summarize(cells)
    assert (lstm["model"], lstm["runs"], lstm["solved"], lstm["diverged"]) == ("lstm", 3, 2, 0)
    assert lstm["steps_median"] == 200 and lstm["ratio_median"] == pytest.approx(0.04)
    assert tanh["solved"] == 0 and tanh["steps_median"] is None and tanh["diverged"] == 1
    assert tanh["ratio_median"] == pytest.approx(1.0)          # 0.9, 1.0 and diverged: inf
    assert gru["ratio_median"] == math.inf and gru["diverged"] == 1
