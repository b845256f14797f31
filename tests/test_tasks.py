"""rnnlab.tasks: layouts recomputed independently, determinism, baselines by Monte Carlo."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import rnnlab.tasks as tasks
from rnnlab.tasks import (
    adding_problem,
    adding_task,
    copy_memory,
    copy_task,
    digits_task,
    latch,
    latch_task,
    sequential_digits,
    temporal_order,
    temporal_order_task,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def best_constant_cross_entropy(targets: torch.Tensor, n_classes: int) -> float:
    """Cross-entropy of the best predictor that sees only the time step: the empirical class
    frequencies at each position (their entropy), averaged over positions."""
    targets = targets.reshape(len(targets), -1)
    counts = np.stack([np.bincount(targets[:, t].numpy(), minlength=n_classes)
                       for t in range(targets.shape[1])])
    p = counts / counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)
    return float(entropy.mean())


SAMPLERS = {
    "adding": lambda b, g: adding_problem(b, 20, g),
    "copy": lambda b, g: copy_memory(b, 5, 7, 4, g),
    "temporal_order": lambda b, g: temporal_order(b, 30, g),
    "latch": lambda b, g: latch(b, 12, 2, 0.5, g),
}


# ------------------------------------------------------------------ adding problem


def test_adding_problem_shapes_and_default_dtype():
    x, y = adding_problem(8, 13, gen())
    assert x.shape == (8, 13, 2) and y.shape == (8, 1)
    assert x.dtype == y.dtype == torch.float32


def test_adding_problem_dtype_and_device_arguments():
    x, y = adding_problem(3, 6, gen(), dtype=torch.float64, device="cpu")
    assert x.dtype == y.dtype == torch.float64 and x.device.type == "cpu"


@pytest.mark.parametrize("seq_len", [2, 7, 50])
def test_adding_problem_has_one_marker_in_each_half(seq_len):
    x, _ = adding_problem(500, seq_len, gen(1))
    markers = x[..., 1]
    assert set(markers.unique().tolist()) <= {0.0, 1.0}
    half = seq_len // 2
    assert torch.all(markers[:, :half].sum(1) == 1)
    assert torch.all(markers[:, half:].sum(1) == 1)


def test_adding_problem_marker_positions_cover_each_half():
    x, _ = adding_problem(2000, 10, gen(2))
    positions = x[..., 1].nonzero()[:, 1]
    assert set(positions.tolist()) == set(range(10))


def test_adding_problem_target_is_sum_of_marked_values():
    x, y = adding_problem(64, 17, gen(3), dtype=torch.float64)
    expected = [sum(float(v) for v, m in zip(row[:, 0], row[:, 1], strict=True) if m == 1)
                for row in x]
    assert torch.allclose(y[:, 0], torch.tensor(expected, dtype=torch.float64), atol=1e-12)


def test_adding_problem_values_are_uniform_on_unit_interval():
    x, _ = adding_problem(1000, 20, gen(4), dtype=torch.float64)
    values = x[..., 0]
    assert values.min() >= 0 and values.max() < 1
    assert abs(values.mean().item() - 0.5) < 0.005
    assert abs(values.var().item() - 1 / 12) < 0.002


def test_adding_baseline_is_one_sixth_by_monte_carlo():
    _, y = adding_problem(200_000, 10, gen(5), dtype=torch.float64)
    task = adding_task(10)
    assert task.baseline_loss == pytest.approx(1 / 6)
    mse = task.loss(torch.ones_like(y), y).item()
    assert mse == pytest.approx(1 / 6, abs=0.002)
    assert abs(y.mean().item() - 1.0) < 0.005        # 1 is the best constant


@pytest.mark.parametrize("kwargs, error, name", [
    ({"batch_size": 0, "seq_len": 5}, ValueError, "batch_size"),
    ({"batch_size": 2, "seq_len": 1}, ValueError, "seq_len"),
    ({"batch_size": 2.0, "seq_len": 5}, TypeError, "batch_size"),
    ({"batch_size": True, "seq_len": 5}, TypeError, "batch_size"),
])
def test_adding_problem_rejects_bad_sizes(kwargs, error, name):
    with pytest.raises(error, match=name):
        adding_problem(**kwargs)


def test_sampler_rejects_non_generator():
    with pytest.raises(TypeError, match="generator"):
        adding_problem(2, 5, 0)


# ------------------------------------------------------------------ determinism and RNG


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_same_generator_seed_gives_same_batch(name):
    a = SAMPLERS[name](16, gen(7))
    b = SAMPLERS[name](16, gen(7))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_different_generator_seeds_give_different_batches(name):
    a = SAMPLERS[name](16, gen(7))
    b = SAMPLERS[name](16, gen(8))
    assert not torch.equal(a[0], b[0])


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("generator", [None, "seeded"])
def test_sampling_leaves_global_rng_untouched(name, generator):
    state = torch.get_rng_state()
    SAMPLERS[name](16, gen(1) if generator else None)
    assert torch.equal(torch.get_rng_state(), state)


def test_no_generator_gives_fresh_randomness():
    a, _ = adding_problem(4, 20)
    b, _ = adding_problem(4, 20)
    assert not torch.equal(a, b)


# ------------------------------------------------------------------ copy task


def test_copy_memory_layout():
    k, delay, n = 4, 6, 5
    x, y = copy_memory(32, k, delay, n, gen(0))
    total = 2 * k + delay + 1
    assert x.shape == (32, total, n + 2) and y.shape == (32, total) and y.dtype == torch.long
    assert torch.all(x.sum(-1) == 1)                                  # one-hot
    tokens = x.argmax(-1)
    assert torch.all((tokens[:, :k] >= 1) & (tokens[:, :k] <= n))
    assert torch.all(tokens[:, k:k + delay] == 0)
    assert torch.all(tokens[:, k + delay] == n + 1)
    assert torch.all(tokens[:, k + delay + 1:] == 0)
    assert torch.all(y[:, :k + delay + 1] == 0)
    assert torch.equal(y[:, -k:], tokens[:, :k])


def test_copy_baseline_equals_best_position_only_predictor():
    k, delay, n = 3, 4, 4
    _, y = copy_memory(40_000, k, delay, n, gen(1))
    task = copy_task(k, delay, n)
    assert task.baseline_loss == pytest.approx(k * math.log(n) / (2 * k + delay + 1))
    assert best_constant_cross_entropy(y, n + 1) == pytest.approx(task.baseline_loss, abs=2e-3)


def test_copy_baseline_matches_arjovsky_formula():
    t = 100
    task = copy_task(n_remember=10, delay=t - 1, n_symbols=8)
    assert task.baseline_loss == pytest.approx(10 * math.log(8) / (t + 20))
    assert task.seq_len == t + 20


def test_copy_accuracy_scores_recall_steps_only():
    task = copy_task(3, 5, 4)
    x, y = task.sample(10, gen(2))
    logits = torch.nn.functional.one_hot(y, task.output_size).float()
    assert task.accuracy(logits, y) == 1.0
    blank_only = torch.zeros_like(logits)
    blank_only[..., 0] = 1.0
    assert task.accuracy(blank_only, y) == 0.0                       # recall steps never blank


def test_copy_memory_rejects_negative_delay():
    with pytest.raises(ValueError, match="delay"):
        copy_memory(2, 3, -1)


# ------------------------------------------------------------------ temporal order


def test_temporal_order_layout_and_classes():
    t = 40
    x, y = temporal_order(2000, t, gen(3))
    assert x.shape == (2000, t, 6) and y.shape == (2000,) and y.dtype == torch.long
    tokens = x.argmax(-1)
    relevant = tokens >= 4
    assert torch.all(relevant.sum(1) == 2)
    positions = relevant.nonzero()[:, 1].reshape(-1, 2)
    assert positions[:, 0].min() >= t // 10 and positions[:, 0].max() < 2 * t // 10
    assert positions[:, 1].min() >= 4 * t // 10 and positions[:, 1].max() < 5 * t // 10
    symbols = tokens[relevant].reshape(-1, 2) - 4                     # 0 = X, 1 = Y
    assert torch.equal(y, 2 * symbols[:, 0] + symbols[:, 1])
    names = {"XX": 0, "XY": 1, "YX": 2, "YY": 3}
    first = "".join(tasks.TEMPORAL_ORDER_SYMBOLS[i] for i in tokens[0] if i >= 4)
    assert names[first] == y[0].item()


def test_temporal_order_baseline_is_log4_by_monte_carlo():
    _, y = temporal_order(40_000, 10, gen(4))
    task = temporal_order_task(10)
    assert task.baseline_loss == pytest.approx(math.log(4))
    assert best_constant_cross_entropy(y, 4) == pytest.approx(math.log(4), abs=1e-3)
    assert task.baseline_accuracy == 0.25


def test_temporal_order_rejects_short_sequences():
    with pytest.raises(ValueError, match="seq_len"):
        temporal_order(2, 9)


# ------------------------------------------------------------------ latch


def test_latch_signal_then_noise():
    x, y = latch(20_000, 10, 3, 0.5, gen(5), dtype=torch.float64)
    assert x.shape == (20_000, 10, 1) and y.dtype == torch.long
    sign = (2 * y - 1).double()
    informative = x[:, :3, 0] - sign[:, None]
    assert abs(informative.std().item() - 0.5) < 0.01
    rest = x[:, 3:, 0]
    assert abs(rest.std().item() - 0.5) < 0.01
    assert abs((rest * sign[:, None]).mean().item()) < 0.01          # carries no class
    assert best_constant_cross_entropy(y, 2) == pytest.approx(latch_task().baseline_loss,
                                                              abs=1e-3)


@pytest.mark.parametrize("kwargs, name", [
    ({"seq_len": 2, "info_len": 3}, "seq_len"),
    ({"info_len": 0}, "info_len"),
    ({"noise_std": -1.0}, "noise_std"),
])
def test_latch_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        latch(2, **kwargs)
    with pytest.raises(ValueError, match=name):
        latch_task(**kwargs)


# ------------------------------------------------------------------ sequential digits


def test_sequential_digits_is_sklearn_digits_pixel_by_pixel():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x_train, y_train = sequential_digits("train")
    x_test, y_test = sequential_digits("test")
    assert x_train.shape[1:] == (64, 1) and len(x_train) + len(x_test) == 1797
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.long
    reference = {(tuple((img / 16.0).astype(np.float32).ravel()), int(label))
                 for img, label in zip(digits.images, digits.target, strict=True)}
    ours = [(tuple(row[:, 0].tolist()), int(label)) for x, y in
            ((x_train, y_train), (x_test, y_test)) for row, label in zip(x, y, strict=True)]
    assert set(ours) == reference
    assert x_train.min() == 0 and x_train.max() == 1


def test_sequential_digits_split_is_deterministic_disjoint_and_stratified():
    a, ya = sequential_digits("test")
    b, yb = sequential_digits("test")
    assert torch.equal(a, b) and torch.equal(ya, yb)
    train, _ = sequential_digits("train")
    train_rows = {tuple(r.flatten().tolist()) for r in train}
    test_rows = {tuple(r.flatten().tolist()) for r in a}
    duplicates_in_sklearn = 1797 - len(train_rows | test_rows)
    assert len(train_rows & test_rows) <= duplicates_in_sklearn
    counts = ya.bincount(minlength=10)
    assert counts.min() >= 34 and counts.max() <= 37


def test_sequential_digits_permutation_reorders_pixels():
    perm = torch.randperm(64, generator=gen(6))
    plain, _ = sequential_digits("test")
    permuted, _ = sequential_digits("test", permutation=perm)
    assert torch.equal(permuted, plain[:, perm])
    with pytest.raises(ValueError, match="permutation"):
        sequential_digits("test", permutation=torch.zeros(64, dtype=torch.long))


def test_sequential_digits_rejects_unknown_split():
    with pytest.raises(ValueError, match="split"):
        sequential_digits("validation")


def test_digits_task_baseline_is_entropy_of_class_frequencies():
    _, y = sequential_digits("train")
    p = np.bincount(y.numpy(), minlength=10) / len(y)
    task = digits_task("train")
    assert task.baseline_loss == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-12)
    assert task.baseline_accuracy == pytest.approx(p.max())
    logits = torch.log(torch.tensor(p, dtype=torch.float64)).expand(len(y), 10)
    assert task.loss(logits, y).item() == pytest.approx(task.baseline_loss, rel=1e-9)


def test_digits_task_samples_rows_of_the_split():
    task = digits_task("test")
    x, y = task.sample(50, gen(7))
    data, labels = sequential_digits("test")
    for row, label in zip(x, y, strict=True):
        match = (data == row).all(dim=(1, 2)).nonzero()[:, 0]
        assert len(match) >= 1 and label in labels[match]


# ------------------------------------------------------------------ Task


@pytest.mark.parametrize("task", [adding_task(12), copy_task(2, 3, 3), temporal_order_task(20),
                                  latch_task(8), digits_task("test")], ids=lambda t: t.name)
def test_task_sample_matches_declared_sizes(task):
    x, y = task.sample(5, gen(8), dtype=torch.float64)
    assert x.shape == (5, task.seq_len, task.input_size) and x.dtype == torch.float64
    if task.objective == "mse":
        assert y.shape == (5, task.output_size)
    else:
        assert y.shape == ((5, task.seq_len) if task.many_to_many else (5,))
        assert int(y.max()) < task.output_size


def test_task_rejects_unknown_objective():
    with pytest.raises(ValueError, match="objective"):
        tasks.Task("x", adding_problem, 2, 1, 5, "hinge", 0.0)


def test_docstring_examples_run():
    result = doctest.testmod(tasks)
    assert result.attempted >= 6 and result.failed == 0
