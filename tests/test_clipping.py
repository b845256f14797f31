"""rnnlab.clipping against torch.nn.utils on cloned parameter sets, and the adaptive clipper's
threshold against numpy.percentile of norms computed independently in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnlab.clipping import AdaptiveClipper, clip_grad_norm_, clip_grad_value_, grad_norm


def _parameter_sets(scale: float = 1.0, dtype=torch.float32):
    """Two identical lists of parameters with gradients (one without), from a real backward."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    model.to(dtype)
    unused = torch.nn.Parameter(torch.randn(4, dtype=dtype))       # never gets a .grad
    loss = scale * model(torch.randn(8, 6, dtype=dtype)).pow(2).sum()
    loss.backward()
    ours = [*model.parameters(), unused]
    theirs = []
    for p in ours:
        q = torch.nn.Parameter(p.detach().clone())
        q.grad = None if p.grad is None else p.grad.clone()
        theirs.append(q)
    return ours, theirs


def _assert_same_grads(ours, theirs):
    for p, q in zip(ours, theirs, strict=True):
        if q.grad is None:
            assert p.grad is None
        else:
            assert torch.equal(p.grad, q.grad)


# --------------------------------------------------------------------------------------------
# clip_grad_norm_
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [2.0, 1, 3.5, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.01, 1.0, 1e6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_grad_norm_equals_torch(norm_type, max_norm, dtype):
    ours, theirs = _parameter_sets(dtype=dtype)
    total = clip_grad_norm_(ours, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert torch.equal(total, expected)
    _assert_same_grads(ours, theirs)


def test_clip_grad_norm_returns_the_norm_before_clipping_and_keeps_the_direction():
    ours, _ = _parameter_sets(scale=100.0)
    grads = [p.grad.clone() for p in ours if p.grad is not None]
    flat = np.concatenate([g.double().numpy().ravel() for g in grads])
    total = clip_grad_norm_(iter(ours), max_norm=0.5)
    assert total.item() == pytest.approx(np.linalg.norm(flat), rel=1e-6)
    coef = 0.5 / (np.linalg.norm(flat) + 1e-6)                     # g·c/(‖g‖+1e-6)
    for before, p in zip(grads, [p for p in ours if p.grad is not None], strict=True):
        np.testing.assert_allclose(p.grad.numpy(), coef * before.numpy(), rtol=1e-5)
    after = np.concatenate([p.grad.double().numpy().ravel() for p in ours if p.grad is not None])
    assert np.linalg.norm(after) == pytest.approx(0.5, rel=1e-5)


def test_clip_grad_norm_leaves_small_gradients_unchanged():
    ours, theirs = _parameter_sets()
    total = clip_grad_norm_(ours, max_norm=1e3)
    assert total.item() < 1e3
    _assert_same_grads(ours, theirs)                                # theirs: never clipped


def test_clip_grad_norm_accepts_a_single_tensor_like_torch():
    a = torch.randn(5, requires_grad=True)
    a.grad = torch.randn(5) * 10
    b = a.detach().clone().requires_grad_()
    b.grad = a.grad.clone()
    assert torch.equal(clip_grad_norm_(a, 1.0), torch.nn.utils.clip_grad_norm_(b, 1.0))
    assert torch.equal(a.grad, b.grad)


def test_clip_grad_norm_of_nothing_is_zero_like_torch():
    no_grad = torch.nn.Parameter(torch.randn(3))
    for params in ([], [no_grad]):
        assert torch.equal(clip_grad_norm_(params, 1.0),
                           torch.nn.utils.clip_grad_norm_(params, 1.0))
        assert clip_grad_norm_(params, 1.0).item() == 0.0
    with pytest.warns(UserWarning, match="empty generator"):
        clip_grad_norm_((p for p in []), 1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_clip_grad_norm_raises_on_nonfinite_norm_when_asked(bad):
    ours, theirs = _parameter_sets()
    for params in (ours, theirs):
        params[0].grad[0, 0] = bad
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=True)
    total = clip_grad_norm_(ours, 1.0)                              # and like torch without
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert torch.equal(total, expected) or (total.isnan() and expected.isnan())
    for p, q in zip(ours, theirs, strict=True):
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("max_norm,error", [(0, ValueError), (-1.0, ValueError),
                                            (math.nan, ValueError), ("1", TypeError),
                                            (None, TypeError), (True, TypeError)])
def test_clip_grad_norm_rejects_bad_max_norm(max_norm, error):
    ours, _ = _parameter_sets()
    before = [p.grad.clone() for p in ours if p.grad is not None]
    with pytest.raises(error, match="max_norm"):
        clip_grad_norm_(ours, max_norm)
    assert all(torch.equal(b, p.grad) for b, p in zip(before, ours, strict=False))


@pytest.mark.parametrize("norm_type,error", [(0, ValueError), (-2.0, ValueError),
                                             (0.5, ValueError), (math.nan, ValueError),
                                             ("fro", ValueError), ([2], TypeError),
                                             (True, TypeError)])
def test_clip_grad_norm_rejects_bad_norm_type(norm_type, error):
    ours, _ = _parameter_sets()
    with pytest.raises(error, match="norm_type"):
        clip_grad_norm_(ours, 1.0, norm_type)


def test_clip_grad_norm_rejects_non_tensor_parameters():
    with pytest.raises(TypeError, match="parameters.*float"):
        clip_grad_norm_([torch.zeros(1), 1.0], 1.0)
    with pytest.raises(TypeError, match="parameters.*int"):
        clip_grad_norm_(3, 1.0)
    with pytest.raises(TypeError, match="error_if_nonfinite"):
        clip_grad_norm_([], 1.0, error_if_nonfinite="yes")


# --------------------------------------------------------------------------------------------
# clip_grad_value_
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("clip_value", [1e-3, 0.1, 1e6])
def test_clip_grad_value_equals_torch(clip_value):
    ours, theirs = _parameter_sets(scale=10.0)
    assert clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    _assert_same_grads(ours, theirs)
    for p in ours:
        if p.grad is not None:
            assert p.grad.abs().max() <= torch.tensor(clip_value, dtype=p.grad.dtype)


@pytest.mark.parametrize("clip_value,error", [(0.0, ValueError), (-1, ValueError),
                                              ("0.1", TypeError)])
def test_clip_grad_value_rejects_bad_clip_value(clip_value, error):
    with pytest.raises(error, match="clip_value"):
        clip_grad_value_([torch.zeros(1)], clip_value)


# --------------------------------------------------------------------------------------------
# AdaptiveClipper
# --------------------------------------------------------------------------------------------

def _feed(clipper, norms_wanted, rng):
    """Give the clipper gradients of prescribed norms; return (norms in numpy, results)."""
    param_a, param_b = (torch.nn.Parameter(torch.zeros(7, dtype=torch.float64)),
                        torch.nn.Parameter(torch.zeros(3, 2, dtype=torch.float64)))
    reference, results = [], []
    for target in norms_wanted:
        a, b = rng.standard_normal(7), rng.standard_normal((3, 2))
        size = np.sqrt(np.sum(a ** 2) + np.sum(b ** 2))
        a, b = a * target / size, b * target / size
        reference.append(np.sqrt(np.sum(a ** 2) + np.sum(b ** 2)))
        param_a.grad = torch.tensor(a, dtype=torch.float64)
        param_b.grad = torch.tensor(b, dtype=torch.float64)
        total, threshold, clipped = clipper([param_a, param_b])
        after = np.sqrt(param_a.grad.pow(2).sum().item() + param_b.grad.pow(2).sum().item())
        results.append((total.item(), threshold, clipped, after))
    return np.array(reference), results


@pytest.mark.parametrize("percentile,window,warmup,factor",
                         [(90, 100, 10, 1.0), (50, 7, 3, 2.0), (0, 5, 5, 1.0), (100, 20, 1, 1.5)])
def test_adaptive_threshold_is_a_numpy_percentile_of_the_previous_norms(percentile, window,
                                                                         warmup, factor):
    rng = np.random.default_rng(0)
    wanted = np.exp(rng.normal(0.0, 1.0, size=60))                  # log-normal norms
    clipper = AdaptiveClipper(percentile=percentile, window=window, warmup=warmup,
                              factor=factor)
    norms, results = _feed(clipper, wanted, rng)
    for k, (total, threshold, clipped, after) in enumerate(results):
        assert total == pytest.approx(norms[k], rel=1e-12)
        past = norms[max(0, k - window):k]
        if k < warmup:
            assert threshold == math.inf and not clipped
            assert after == pytest.approx(norms[k], rel=1e-12)
            continue
        expected = factor * np.percentile(past, percentile)
        assert threshold == pytest.approx(expected, rel=1e-12)
        assert clipped == (norms[k] > expected)
        scale = min(1.0, expected / (norms[k] + 1e-6)) if clipped else 1.0   # torch's formula
        assert after == pytest.approx(norms[k] * scale, rel=1e-12)
    assert clipper.history == pytest.approx(tuple(norms[-window:]), rel=1e-12)


def test_adaptive_clipper_clips_a_spike_after_a_stable_history():
    rng = np.random.default_rng(1)
    clipper = AdaptiveClipper(percentile=90, window=50, warmup=10)
    stable = 1.0 + 0.05 * rng.standard_normal(40)
    norms, results = _feed(clipper, [*stable, 100.0], rng)
    total, threshold, clipped, after = results[-1]
    assert clipped and total == pytest.approx(100.0)
    assert 1.0 < threshold < 1.2                                    # from the stable norms
    assert after == pytest.approx(threshold, rel=1e-5)
    assert clipper.threshold < 3.0                                  # one spike barely moves q90


def test_adaptive_clipper_does_not_clip_during_warmup():
    rng = np.random.default_rng(2)
    clipper = AdaptiveClipper(percentile=50, window=10, warmup=4)
    _, results = _feed(clipper, [1.0, 1000.0, 1.0, 1e6, 1e7], rng)   # then: median 500.5
    assert [r[2] for r in results] == [False] * 4 + [True]
    assert [r[3] for r in results[:4]] == pytest.approx([1.0, 1000.0, 1.0, 1e6])
    clipper.reset()
    assert clipper.history == () and clipper.threshold == math.inf


def test_adaptive_clipper_keeps_nonfinite_norms_out_of_the_history():
    clipper = AdaptiveClipper(warmup=1, error_if_nonfinite=False)
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    clipper([p])
    p.grad = torch.tensor([math.nan, 1.0])
    total, threshold, clipped = clipper([p])
    assert total.isnan() and threshold == 5.0 and not clipped
    assert clipper.history == (5.0,)
    strict = AdaptiveClipper(error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        strict([p])


@pytest.mark.parametrize("kwargs,error,name", [
    (dict(percentile=101), ValueError, "percentile"), (dict(percentile=-1), ValueError,
                                                       "percentile"),
    (dict(percentile="90"), TypeError, "percentile"), (dict(window=0), ValueError, "window"),
    (dict(window=2.5), TypeError, "window"), (dict(warmup=0), ValueError, "warmup"),
    (dict(window=5, warmup=6), ValueError, "warmup"), (dict(factor=0), ValueError, "factor"),
    (dict(norm_type=0.5), ValueError, "norm_type"),
    (dict(error_if_nonfinite=1), TypeError, "error_if_nonfinite"),
])
def test_adaptive_clipper_rejects_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        AdaptiveClipper(**kwargs)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, math.inf])
def test_grad_norm_is_torchs_pre_clip_norm_and_leaves_gradients_alone(norm_type):
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5)),
              torch.nn.Parameter(torch.randn(2))]
    for p in params[:2]:
        p.grad = torch.randn_like(p) * 10
    before = [p.grad.clone() for p in params[:2]]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in params[:2]]
    for r, p in zip(reference, params):
        r.grad = p.grad.clone()
    want = torch.nn.utils.clip_grad_norm_(reference, math.inf, norm_type=norm_type)
    got = grad_norm(params, norm_type=norm_type)
    torch.testing.assert_close(got, want)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before))
    assert params[2].grad is None
