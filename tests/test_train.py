"""rnnlab.train: the read-out model against torch's modules, fit's records against hand-made
optimizer steps, determinism, early stopping, and the adding-problem results of the book."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import rnnlab.models
from rnnlab.clipping import AdaptiveClipper
from rnnlab.tasks import adding_task, copy_task, temporal_order_task
from rnnlab.train import History, SequenceModel, evaluate, fit, make_model


def small_adding_model(seed: int = 0, kind: str = "rnn") -> tuple:
    task = adding_task(6)
    return task, make_model(task, kind, 5, seed=seed)


def first_batch(task, seed: int, batch_size: int):
    return task.sample(batch_size, torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ SequenceModel


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_many_to_one_is_readout_of_last_hidden_state(kind):
    torch.manual_seed(1)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    core = cls(3, 4, batch_first=True)
    model = SequenceModel(core, 2)
    x = torch.randn(5, 7, 3)
    reference = cls(3, 4)                                          # time-major twin
    reference.load_state_dict(core.state_dict())
    h_last = reference(x.transpose(0, 1))[0][-1]                  # (B, H)
    expected = h_last @ model.readout.weight.T + model.readout.bias
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_many_to_many_gives_one_output_per_step():
    task = copy_task(2, 3, 4)
    model = make_model(task, "gru", 6, seed=0)
    x, y = task.sample(3, torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (3, task.seq_len, task.output_size)
    h, _ = model.core(x)
    assert torch.allclose(out, model.readout(h), atol=1e-6)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_unroll_path_matches_fused_values_and_gradients(kind):
    task = temporal_order_task(12)
    fused = make_model(task, kind, 5, seed=3)
    stepped = copy.deepcopy(fused)
    stepped.unroll = True
    x, y = task.sample(4, torch.Generator().manual_seed(1))
    losses = [task.loss(m(x), y) for m in (fused, stepped)]
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    grads = [torch.autograd.grad(loss, list(m.parameters())) for loss, m in
             zip(losses, (fused, stepped), strict=True)]
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_sequence_model_validates_core():
    with pytest.raises(TypeError, match="core"):
        SequenceModel(torch.nn.Linear(2, 2), 1)
    with pytest.raises(ValueError, match="batch_first"):
        SequenceModel(torch.nn.RNN(2, 3), 1)
    with pytest.raises(TypeError, match="unroll"):
        SequenceModel(torch.nn.RNN(2, 3, batch_first=True), 1, unroll="yes")
    with pytest.raises(ValueError, match="output_size"):
        SequenceModel(torch.nn.RNN(2, 3, batch_first=True), 0)


def test_sequence_model_unrolls_a_core_of_torchs_own_like_its_fused_forward():
    torch.manual_seed(2)
    model = SequenceModel(torch.nn.LSTM(3, 4, batch_first=True).double(), 2).double()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    fused = model(x)
    model.unroll = True
    stepped = model(x)
    torch.testing.assert_close(stepped, fused, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(stepped.sum(), list(model.parameters())),
                    torch.autograd.grad(fused.sum(), list(model.parameters())), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_make_model_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = make_model(adding_task(5), "lstm", 4, seed=7)
    b = make_model(adding_task(5), "lstm", 4, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert isinstance(a.core, rnnlab.models.LSTM)
    with pytest.raises(ValueError, match="kind"):
        make_model(adding_task(5), "transformer")


# ------------------------------------------------------------------ fit records


def test_recorded_grad_norm_is_the_norm_before_clipping():
    task, model = small_adding_model()
    reference = copy.deepcopy(model)
    history = fit(model, task, 1, batch_size=8, optimizer="sgd", lr=0.1, clip=("norm", 1e-3),
                  seed=5, progress=False)
    x, y = first_batch(task, 5, 8)
    grads = torch.autograd.grad(task.loss(reference(x), y), list(reference.parameters()))
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
    assert history.grad_norm[0] == pytest.approx(norm, rel=1e-5)
    assert history.clipped == [True] and history.threshold == [1e-3]


@pytest.mark.parametrize("clip", [("norm", 0.05), ("value", 0.01), None])
def test_sgd_step_applies_the_clipping_rule(clip):
    task, model = small_adding_model()
    reference = copy.deepcopy(model)
    fit(model, task, 1, batch_size=8, optimizer="sgd", lr=0.5, clip=clip, seed=2,
        progress=False)
    x, y = first_batch(task, 2, 8)
    grads = torch.autograd.grad(task.loss(reference(x), y), list(reference.parameters()))
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads))
    for p0, g, p1 in zip(reference.parameters(), grads, model.parameters(), strict=True):
        if clip is None:
            step = g
        elif clip[0] == "norm":
            step = g * min(1.0, clip[1] / norm)
        else:
            step = g.clamp(-clip[1], clip[1])
        assert torch.allclose(p1, p0 - 0.5 * step, atol=1e-6)


def test_adaptive_clipper_results_are_recorded():
    calls = []

    def clipper(parameters):
        calls.append(len(list(parameters)))
        return torch.tensor(3.0), 2.5, len(calls) % 2 == 0

    task, model = small_adding_model()
    history = fit(model, task, 4, clip=clipper, progress=False)
    assert calls == [len(list(model.parameters()))] * 4
    assert history.grad_norm == [3.0] * 4 and history.threshold == [2.5] * 4
    assert history.clipped == [False, True, False, True] and history.clip_fraction == 0.5


def test_adaptive_clipper_from_rnnlab_clipping_is_consistent():
    task, model = small_adding_model()
    history = fit(model, task, 12, lr=0.05, clip=AdaptiveClipper(percentile=50, window=5,
                                                                  warmup=3), progress=False)
    assert history.threshold[:3] == [math.inf] * 3
    assert all(math.isfinite(t) for t in history.threshold[3:])
    assert history.threshold[3] == pytest.approx(float(np.median(history.grad_norm[:3])))
    assert history.clipped == [n > t for n, t in
                               zip(history.grad_norm, history.threshold, strict=True)]


def test_history_without_clipping_has_nan_threshold_and_increasing_time():
    task, model = small_adding_model()
    history = fit(model, task, 5, progress=False)
    assert history.steps == 5 and not any(history.clipped)
    assert all(math.isnan(t) for t in history.threshold)
    assert all(b >= a for a, b in zip(history.time, history.time[1:], strict=False))
    assert history.seconds == history.time[-1] > 0
    assert history.baseline_loss == pytest.approx(1 / 6)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_fit_is_deterministic_under_seed(kind):
    runs = []
    for _ in range(2):
        task, model = small_adding_model(seed=1, kind=kind)
        runs.append(fit(model, task, 15, lr=1e-2, clip=("norm", 0.5), seed=3, eval_every=5,
                        progress=False))
    assert runs[0].loss == runs[1].loss and runs[0].grad_norm == runs[1].grad_norm
    assert runs[0].eval_loss == runs[1].eval_loss
    task, model = small_adding_model(seed=1, kind=kind)
    other = fit(model, task, 15, lr=1e-2, clip=("norm", 0.5), seed=4, progress=False)
    assert other.loss != runs[0].loss


def test_fit_with_dropout_is_deterministic_and_leaves_global_rng_alone():
    task = adding_task(5)
    runs, state = [], torch.get_rng_state()
    for _ in range(2):
        core = rnnlab.models.GRU(2, 4, num_layers=2, dropout=0.5, batch_first=True)
        core.load_state_dict(make_model(task, "gru", 4, num_layers=2, seed=0).core.state_dict())
        torch.manual_seed(0)
        model = SequenceModel(core, 1)
        runs.append(fit(model, task, 5, progress=False).loss)
    assert runs[0] == runs[1]
    torch.set_rng_state(state)
    task, model = small_adding_model()
    fit(model, task, 3, progress=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_target_loss_stops_at_first_evaluation_below_it():
    task, model = small_adding_model()
    history = fit(model, task, 100, target_loss=10.0, eval_every=4, progress=False)
    assert history.stopped == "target" and history.steps == 4 and history.eval_step == [4]


def test_eval_loss_is_loss_on_held_out_batch():
    task, model = small_adding_model()
    history = fit(model, task, 3, eval_every=3, eval_batch_size=32, progress=False, seed=1)
    x, y = task.sample(32, torch.Generator().manual_seed(1 + 2**32))
    with torch.no_grad():
        expected = float(task.loss(model(x), y))
    assert history.eval_loss == [pytest.approx(expected, rel=1e-6)]
    assert evaluate(model, task, x, y) == (pytest.approx(expected, rel=1e-6), None)


def test_nonfinite_loss_stops_without_stepping():
    task = adding_task(4)
    count = {"n": 0}

    def sampler(batch_size, generator=None, device=None):
        count["n"] += 1
        x, y = task.sample(batch_size, generator, device=device)
        return x, (y * math.nan if count["n"] == 3 else y)

    _, model = small_adding_model()
    params_after_two = []
    history = fit(model, sampler, 10, loss_fn=task.loss, progress=False,
                  callback=lambda step, m, h: params_after_two.append(
                      [p.detach().clone() for p in m.parameters()]))
    assert history.stopped == "nonfinite" and history.steps == 3
    assert math.isnan(history.loss[-1])
    assert all(torch.equal(p, q) for p, q in
               zip(params_after_two[-1], model.parameters(), strict=True))


def test_callback_can_stop_training():
    task, model = small_adding_model()
    history = fit(model, task, 50, progress=False, callback=lambda step, m, h: step == 7)
    assert history.stopped == "callback" and history.steps == 7


def test_progress_bar_is_shown_only_when_asked(capsys):
    task, model = small_adding_model()
    fit(model, task, 3, progress=False)
    assert capsys.readouterr().err == ""
    fit(model, task, 3, progress=True)
    assert "fit" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, error, name", [
    ({"steps": 0}, ValueError, "steps"),
    ({"clip": ("norm", -1.0)}, ValueError, "clip"),
    ({"clip": ("max", 1.0)}, ValueError, "clip"),
    ({"optimizer": "lbfgs"}, ValueError, "optimizer"),
    ({"optimizer": 3}, TypeError, "optimizer"),
    ({"eval_every": 0}, ValueError, "eval_every"),
    ({"batch_size": 0}, ValueError, "batch_size"),
])
def test_fit_rejects_bad_arguments(kwargs, error, name):
    task, model = small_adding_model()
    arguments = {"steps": 2, "progress": False, **kwargs}
    with pytest.raises(error, match=name):
        fit(model, task, **arguments)


def test_plain_sampler_needs_loss_fn():
    _, model = small_adding_model()
    with pytest.raises(ValueError, match="loss_fn"):
        fit(model, adding_task(4).sample, 2, progress=False)


def test_history_is_a_plain_record():
    assert History().steps == 0 and History().seconds == 0.0 and History().clip_fraction == 0.0


# ------------------------------------------------------------------ results quoted in the book
# Adding problem, T = 50, B = 64, H = 64, clip the norm at 1 (Hochreiter & Schmidhuber 1997;
# Le et al. 2015). Baseline MSE 1/6 ≈ 0.167; "solved" = held-out MSE < 0.01.


def train_adding(kind, lr, steps, nonlinearity="tanh", init=None):
    task = adding_task(50)
    model = make_model(task, kind, 64, nonlinearity=nonlinearity, seed=0)
    if init is not None:
        init(model.core)
    return fit(model, task, steps, batch_size=64, lr=lr, clip=("norm", 1.0), target_loss=0.01,
               eval_every=25, seed=0, progress=False)


@pytest.mark.slow
def test_lstm_solves_adding_problem_t50_within_1000_steps():
    history = train_adding("lstm", 1e-2, 1000)
    assert history.stopped == "target" and history.eval_loss[-1] < 0.01


@pytest.mark.slow
def test_default_tanh_rnn_does_not_solve_adding_problem_t50_in_1000_steps():
    history = train_adding("rnn", 1e-2, 1000)
    assert history.stopped == "steps"
    assert min(history.eval_loss) > 0.1                  # stays near the baseline 1/6


@pytest.mark.slow
def test_identity_init_relu_rnn_beats_default_init_on_adding_problem_t50():
    from rnnlab.init import identity_

    irnn = train_adding("rnn", 1e-3, 1000, nonlinearity="relu", init=identity_)
    default = train_adding("rnn", 1e-3, 1000)
    baseline = adding_task(50).baseline_loss                 # 1/6: predict the mean
    assert min(default.eval_loss) > 0.6 * baseline           # the default RNN learns nothing
    assert irnn.eval_loss[-1] < 0.18 * baseline              # the IRNN learns the sum (0.03)
