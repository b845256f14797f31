"""rnnlab.ensemble against its independent reference: each member run and trained on its own."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlab.ensemble import Ensemble, fit_members
from rnnlab.init import identity_, orthogonal_
from rnnlab.tasks import adding_task, temporal_order_task
from rnnlab.train import fit, make_model


def _members(task, kind="rnn", n=3, hidden_size=6, nonlinearity="tanh"):
    return [make_model(task, kind, hidden_size, nonlinearity=nonlinearity, seed=s).double()
            for s in range(n)]


def _clone(models):
    return [make_model_like(m) for m in models]


def make_model_like(model):
    twin = type(model)(type(model.core)(model.core.input_size, model.core.hidden_size,
                                        batch_first=True, **_extra(model.core)),
                       model.readout.out_features, many_to_many=model.many_to_many).double()
    twin.load_state_dict(model.state_dict())
    return twin


def _extra(core):
    return {"nonlinearity": core.nonlinearity} if hasattr(core, "nonlinearity") else {}


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_forward_slices_equal_each_member_alone(kind):
    task = adding_task(12)
    models = _members(task, kind)
    x, _ = task.sample(5, torch.Generator().manual_seed(0), dtype=torch.float64)
    out = Ensemble(models)(x)                                           # (B, n, O)
    assert out.shape == (5, 3, 1)
    for k, model in enumerate(models):
        torch.testing.assert_close(out[:, k], model(x), rtol=1e-12, atol=1e-12)


def test_forward_many_to_many_members():
    task = temporal_order_task(10)
    models = [make_model(task, "gru", 5, seed=s).double() for s in range(2)]
    for m in models:
        m.many_to_many = True
    x, _ = task.sample(3, torch.Generator().manual_seed(1), dtype=torch.float64)
    out = Ensemble(models)(x)
    assert out.shape == (3, 10, 2, task.output_size)
    torch.testing.assert_close(out[:, :, 1], models[1](x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("kind", "clip"), [("rnn", None), ("lstm", ("norm", 0.05))])
def test_fit_members_matches_separate_fits(kind, clip):
    task = adding_task(10)
    models = _members(task, kind)
    references = _clone(models)
    histories = fit_members(models, task, 30, batch_size=16, lr=1e-2, clip=clip, seed=3,
                            eval_every=10)
    for model, reference, history in zip(models, references, histories, strict=True):
        alone = fit(reference, task, 30, batch_size=16, lr=1e-2, clip=clip, seed=3,
                    progress=False, eval_every=10)
        assert history.steps == alone.steps == 30
        assert history.stopped == alone.stopped == "steps"
        for field in ("loss", "grad_norm", "eval_loss"):
            torch.testing.assert_close(torch.tensor(getattr(history, field)),
                                       torch.tensor(getattr(alone, field)),
                                       rtol=1e-9, atol=1e-12)
        assert history.eval_step == alone.eval_step == [10, 20, 30]
        assert history.clipped == alone.clipped
        if clip:
            assert any(history.clipped)            # the test exercises clipping
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12, msg=name)


def test_members_differing_in_init_and_clipping_train_as_alone_relu():
    task = adding_task(8)
    models = _members(task, nonlinearity="relu", n=3)
    identity_(models[0].core)
    identity_(models[1].core)
    orthogonal_(models[2].core, generator=torch.Generator().manual_seed(0))
    clips = [("norm", 0.1), None, ("norm", 1.0)]
    references = _clone(models)
    histories = fit_members(models, task, 15, batch_size=8, lr=1e-2, clip=clips)
    for reference, history, clip in zip(references, histories, clips, strict=True):
        alone = fit(reference, task, 15, batch_size=8, lr=1e-2, clip=clip, progress=False)
        for field in ("loss", "grad_norm", "threshold"):
            torch.testing.assert_close(torch.tensor(getattr(history, field)),
                                       torch.tensor(getattr(alone, field)),
                                       rtol=1e-9, atol=1e-12, equal_nan=True)
        assert history.clipped == alone.clipped
    assert any(histories[0].clipped) and not any(histories[1].clipped)


def test_off_block_weights_stay_zero_during_training():
    task = adding_task(6)
    ensemble = Ensemble(_members(task, "lstm", n=2, hidden_size=3))
    opt = torch.optim.Adam(ensemble.parameters(), lr=0.1)
    x, y = task.sample(4, torch.Generator().manual_seed(0), dtype=torch.float64)
    for _ in range(3):
        opt.zero_grad()
        ensemble.member_losses(ensemble(x), y, task).sum().backward()
        opt.step()
    w = ensemble.net.core.weight_hh_l0                                    # (4·6, 6)
    for gate in range(4):
        block = w[gate * 6:(gate + 1) * 6]
        assert block[:3, 3:].abs().max() == 0 and block[3:, :3].abs().max() == 0
        assert block[:3, :3].abs().min() > 0
    readout = ensemble.net.readout.weight                                 # (2, 6)
    assert readout[0, 3:].abs().max() == 0 and readout[1, :3].abs().max() == 0


def test_a_diverging_member_stops_the_whole_run_where_fit_would_stop_it():
    task = adding_task(60)
    models = [make_model(task, "rnn", 4, nonlinearity="relu", seed=s) for s in range(2)]
    identity_(models[1].core, scale=8.0)                   # 8^60 overflows float32
    before = [p.clone() for p in models[0].parameters()]
    alone = fit(_clone_float(models[1]), task, 5, batch_size=4, progress=False)
    histories = fit_members(models, task, 5, batch_size=4)
    assert alone.stopped == "nonfinite" and alone.steps == 1
    assert [h.stopped for h in histories] == ["nonfinite", "nonfinite"]
    assert [h.steps for h in histories] == [1, 1]
    assert not math.isfinite(histories[1].loss[0])
    for p, q in zip(models[0].parameters(), before, strict=True):   # no step was taken
        assert torch.equal(p, q)


def _clone_float(model):
    return make_model_like(model).float()


def test_argument_checks():
    task = adding_task(5)
    models = _members(task, n=2)
    with pytest.raises(TypeError, match="models"):
        Ensemble(models[0])
    with pytest.raises(ValueError, match="^models: expected a non-empty sequence"):
        Ensemble([])
    with pytest.raises(TypeError, match=r"models\[1\]"):
        Ensemble([models[0], models[1].core])
    with pytest.raises(ValueError, match=r"models\[1\]: expected the architecture"):
        Ensemble([models[0], make_model(task, "rnn", 7, seed=0).double()])
    with pytest.raises(ValueError, match=r"models\[0\]: expected a one-layer"):
        Ensemble([make_model(task, "rnn", 4, num_layers=2)])
    with pytest.raises(ValueError, match="clip"):
        fit_members(models, task, 1, clip=("value", 1.0))
    with pytest.raises(ValueError, match="one per member"):
        fit_members(models, task, 1, clip=[("norm", 1.0)])
    with pytest.raises(TypeError, match="optimizer"):
        fit_members(models, task, 1, optimizer=torch.optim.SGD)
    with pytest.raises(TypeError, match="task"):
        fit_members(models, lambda n, generator=None, device=None: None, 1)
    with pytest.raises(TypeError, match="^eval_every: expected an int >= 1, got float$"):
        fit_members(models, task, 1, eval_every=2.0)
    with pytest.raises(ValueError, match="^eval_every: expected an int >= 1, got 0$"):
        fit_members(models, task, 1, eval_every=0)
    with pytest.raises(ValueError, match="models: expected 2 models"):
        Ensemble(models).copy_to_(models[:1])
