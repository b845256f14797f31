r"""Synthetic long-memory tasks and sequential digits, batch-first, seeded only by a generator.

Each sampler returns ``(inputs, targets)`` with ``inputs`` of shape ``(B, T, I)``. Randomness comes
only from ``generator`` (a :class:`torch.Generator`); the global RNG is never read, so sampling
data does not shift the stream that initialises models. With ``generator=None`` a fresh,
non-deterministically seeded generator is used: pass one for reproducible data. Values are drawn
on the generator's device and then moved to ``device``, so a CPU generator gives the same data on
every device.

Each task also has a :class:`Task` (``adding_task``, ``copy_task``, ``temporal_order_task``,
``latch_task``, ``digits_task``) bundling the sampler, the loss and the *baseline*: the loss and
accuracy of the best predictor that ignores the content of the input (it may know the time step).
A model is said to solve a task when its loss is far below that baseline.

==================  =========  ==========  ===============  ===================================
task                I          targets     loss             baseline (input ignored)
==================  =========  ==========  ===============  ===================================
adding problem      2          (B, 1)      MSE              Var(X_1 + X_2) = 2/12 = 1/6
copy / memory       n + 2      (B, T)      CE per step      K ln(n) / (2K + D + 1)
temporal order      6          (B,)        CE, 4 classes    ln 4, accuracy 1/4
latch (two-seq.)    1          (B,)        CE, 2 classes    ln 2, accuracy 1/2
sequential digits   1          (B,)        CE, 10 classes   entropy of the class frequencies
==================  =========  ==========  ===============  ===================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from rnnlab.checks import check_choice, check_int, check_number, check_type

__all__ = ["Task", "adding_problem", "copy_memory", "temporal_order", "latch",
           "sequential_digits", "adding_task", "copy_task", "temporal_order_task", "latch_task",
           "digits_task", "TEMPORAL_ORDER_SYMBOLS"]

TEMPORAL_ORDER_SYMBOLS = ("a", "b", "c", "d", "X", "Y")


def _source(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        fresh = torch.Generator()
        fresh.seed()
        return fresh
    return check_type("generator", generator, torch.Generator, "a torch.Generator or None")


def adding_problem(batch_size: int, seq_len: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device=None) -> tuple[Tensor, Tensor]:
    r"""The adding problem (Hochreiter & Schmidhuber 1997).

    Channel 0 holds values :math:`u_t \sim U(0, 1)`; channel 1 holds exactly two 1-markers, one
    at :math:`t_1 \in [0, \lfloor T/2 \rfloor)` and one at :math:`t_2 \in [\lfloor T/2 \rfloor, T)`
    (uniform), zeros elsewhere. The target is :math:`y = u_{t_1} + u_{t_2}`. Predicting the mean
    :math:`E[y] = 1` gives the baseline MSE :math:`\mathrm{Var}(y) = 2 \cdot \tfrac{1}{12} = 1/6`.

    Returns ``inputs`` (B, T, 2) and ``targets`` (B, 1).

    Example::

        >>> x, y = adding_problem(4, 10, torch.Generator().manual_seed(0))
        >>> x.shape, y.shape, x[..., 1].sum(1).tolist()
        (torch.Size([4, 10, 2]), torch.Size([4, 1]), [2.0, 2.0, 2.0, 2.0])
        >>> torch.allclose(y[:, 0], (x[..., 0] * x[..., 1]).sum(1))
        True
    """
    check_int("batch_size", batch_size, 1)
    check_int("seq_len", seq_len, 2)
    g = _source(generator)
    half = seq_len // 2
    values = torch.rand(batch_size, seq_len, generator=g, device=g.device, dtype=torch.float64)
    first = torch.randint(0, half, (batch_size,), generator=g, device=g.device)
    second = torch.randint(half, seq_len, (batch_size,), generator=g, device=g.device)
    markers = torch.zeros_like(values)
    rows = torch.arange(batch_size, device=g.device)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = (values[rows, first] + values[rows, second]).unsqueeze(1)    # (B, 1)
    inputs = torch.stack([values, markers], dim=-1)                       # (B, T, 2)
    return inputs.to(device=device, dtype=dtype), targets.to(device=device, dtype=dtype)


def copy_memory(batch_size: int, n_remember: int = 10, delay: int = 50, n_symbols: int = 8,
                generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32,
                device=None) -> tuple[Tensor, Tensor]:
    r"""The copy (memory) task (Hochreiter & Schmidhuber 1997; layout of Arjovsky et al. 2016).

    Tokens: 0 = blank, 1..n = symbols, n + 1 = delimiter. With K = ``n_remember``, D = ``delay``
    and total length :math:`T = 2K + D + 1`:

    * input tokens: K symbols (uniform on 1..n), D blanks, the delimiter, K blanks;
    * target tokens: K + D + 1 blanks, then the K symbols in their original order.

    Inputs are one-hot, (B, T, n + 2); targets are token indices, (B, T) ``int64``, and the loss
    is the cross-entropy averaged over all T steps. A model with no memory of the symbols can
    still predict the blanks exactly (their positions are fixed) but must guess uniformly among
    n symbols at each of the K recall steps, so its best loss is :math:`K \ln n / (2K + D + 1)`
    (Arjovsky et al.'s :math:`10 \ln 8 / (T + 20)` for K = 10, n = 8, D = T - 1).

    Example::

        >>> x, y = copy_memory(1, n_remember=3, delay=2, n_symbols=4,
        ...                    generator=torch.Generator().manual_seed(0))
        >>> x.argmax(-1).tolist(), y.tolist()
        ([[1, 4, 2, 0, 0, 5, 0, 0, 0]], [[0, 0, 0, 0, 0, 0, 1, 4, 2]])
    """
    check_int("batch_size", batch_size, 1)
    check_int("n_remember", n_remember, 1)
    check_int("delay", delay, 0)
    check_int("n_symbols", n_symbols, 1)
    g = _source(generator)
    k = n_remember
    total = 2 * k + delay + 1
    symbols = torch.randint(1, n_symbols + 1, (batch_size, k), generator=g, device=g.device)
    tokens = torch.zeros(batch_size, total, dtype=torch.long, device=g.device)
    tokens[:, :k] = symbols
    tokens[:, k + delay] = n_symbols + 1                                   # the delimiter
    targets = torch.zeros_like(tokens)
    targets[:, total - k:] = symbols                                      # (B, T)
    inputs = torch.nn.functional.one_hot(tokens, n_symbols + 2)           # (B, T, n + 2)
    return inputs.to(device=device, dtype=dtype), targets.to(device=device)


def temporal_order(batch_size: int, seq_len: int = 100, generator: torch.Generator | None = None,
                   *, dtype: torch.dtype = torch.float32, device=None) -> tuple[Tensor, Tensor]:
    r"""The temporal-order task (Hochreiter & Schmidhuber 1997, exp. 6a; Pascanu et al. 2013).

    Every step shows one symbol of :data:`TEMPORAL_ORDER_SYMBOLS` = (a, b, c, d, X, Y), one-hot.
    Distractors a-d are uniform; two relevant symbols, each X or Y, sit at
    :math:`t_1 \in [\lfloor T/10 \rfloor, \lfloor 2T/10 \rfloor)` and
    :math:`t_2 \in [\lfloor 4T/10 \rfloor, \lfloor 5T/10 \rfloor)`. The class is their order:
    XX = 0, XY = 1, YX = 2, YY = 3 (uniform, so the baseline is :math:`\ln 4`, accuracy 1/4).

    Returns ``inputs`` (B, T, 6) and ``targets`` (B,) ``int64``; ``seq_len`` >= 10.

    Example::

        >>> x, y = temporal_order(1, 10, torch.Generator().manual_seed(0))
        >>> "".join(TEMPORAL_ORDER_SYMBOLS[i] for i in x[0].argmax(-1)), y.tolist()
        ('aXbaYdddbd', [1])
    """
    check_int("batch_size", batch_size, 1)
    check_int("seq_len", seq_len, 10)
    g = _source(generator)
    tokens = torch.randint(0, 4, (batch_size, seq_len), generator=g, device=g.device)
    t1 = torch.randint(seq_len // 10, 2 * seq_len // 10, (batch_size,), generator=g,
                       device=g.device)
    t2 = torch.randint(4 * seq_len // 10, 5 * seq_len // 10, (batch_size,), generator=g,
                       device=g.device)
    first = torch.randint(0, 2, (batch_size,), generator=g, device=g.device)   # 0 = X, 1 = Y
    second = torch.randint(0, 2, (batch_size,), generator=g, device=g.device)
    rows = torch.arange(batch_size, device=g.device)
    tokens[rows, t1] = 4 + first
    tokens[rows, t2] = 4 + second
    inputs = torch.nn.functional.one_hot(tokens, 6)                        # (B, T, 6)
    targets = 2 * first + second                                           # (B,)
    return inputs.to(device=device, dtype=dtype), targets.to(device=device)


def latch(batch_size: int, seq_len: int = 50, info_len: int = 3, noise_std: float = 0.2,
          generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32,
          device=None) -> tuple[Tensor, Tensor]:
    r"""The latch / two-sequence problem (after Bengio, Simard & Frasconi 1994).

    The class :math:`c \in \{0, 1\}` (uniform) is shown in the first L = ``info_len`` steps as
    :math:`x_t = 2c - 1 + \sigma\epsilon_t`; the remaining T - L steps are pure noise
    :math:`x_t = \sigma\epsilon_t` with :math:`\epsilon_t \sim N(0, 1)`, :math:`\sigma` =
    ``noise_std``. The network must latch the bit for T - L steps. Baseline :math:`\ln 2`,
    accuracy 1/2.

    Returns ``inputs`` (B, T, 1) and ``targets`` (B,) ``int64``.

    Example::

        >>> x, y = latch(2, seq_len=6, info_len=2, noise_std=0.0,
        ...              generator=torch.Generator().manual_seed(0))
        >>> x[:, :2, 0].tolist(), x[:, 2:].abs().max().item(), y.tolist()
        ([[-1.0, -1.0], [1.0, 1.0]], 0.0, [0, 1])
    """
    check_int("batch_size", batch_size, 1)
    check_int("info_len", info_len, 1)
    check_int("seq_len", seq_len, info_len)
    check_number("noise_std", noise_std, minimum=0)
    g = _source(generator)
    targets = torch.randint(0, 2, (batch_size,), generator=g, device=g.device)
    noise = torch.randn(batch_size, seq_len, generator=g, device=g.device, dtype=torch.float64)
    inputs = noise_std * noise
    inputs[:, :info_len] += (2 * targets - 1).unsqueeze(1)
    return inputs.unsqueeze(-1).to(device=device, dtype=dtype), targets.to(device=device)


def sequential_digits(split: str = "train", *, permutation: Tensor | None = None,
                      dtype: torch.dtype = torch.float32, device=None) -> tuple[Tensor, Tensor]:
    r"""scikit-learn's bundled 8×8 digits read pixel by pixel (no download).

    Each image becomes a sequence of T = 64 pixels in row-major order (or in the order of
    ``permutation``, a permutation of 0..63, for the "permuted" variant), scaled from 0..16 to
    [0, 1], so ``inputs`` is (N, 64, 1) and ``targets`` (N,) ``int64`` in 0..9. The split is
    deterministic and stratified: within each class, every fifth image (class-wise index
    :math:`\equiv 4 \pmod 5`) is in ``"test"`` (355 images), the others in ``"train"`` (1442).

    Example::

        >>> x, y = sequential_digits("test")
        >>> tuple(x.shape), float(x.min()), float(x.max()), y.bincount().tolist()
        ((355, 64, 1), 0.0, 1.0, [35, 36, 35, 36, 36, 36, 36, 35, 34, 36])
    """
    check_choice("split", split, ("train", "test"))
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float64).reshape(-1, 64) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    if permutation is not None:
        check_type("permutation", permutation, Tensor, "None or a (64,) tensor")
        if (permutation.shape != (64,)
                or not torch.equal(permutation.sort().values, torch.arange(64))):
            raise ValueError(f"permutation: expected a permutation of 0..63 as a (64,) tensor, "
                             f"got {permutation!r}")
        images = images[:, permutation]
    rank = torch.zeros_like(labels)                                        # index within class
    for c in range(10):
        members = labels == c
        rank[members] = torch.arange(int(members.sum()))
    keep = (rank % 5 == 4) if split == "test" else (rank % 5 != 4)
    inputs = images[keep].unsqueeze(-1)                                    # (N, 64, 1)
    return inputs.to(device=device, dtype=dtype), labels[keep].to(device=device)


# --------------------------------------------------------------------------------------------
# Tasks: a sampler with its loss and its no-memory baseline
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """A sampler with its objective and the baseline of a model that ignores the input.

    ``sampler(batch_size, generator=None, *, dtype, device) -> (inputs (B, T, I), targets)``.
    ``objective`` is ``"mse"`` (targets (B, O) float) or ``"cross_entropy"`` (targets (B,), or
    (B, T) when ``many_to_many``, ``int64`` class indices). ``scored_steps`` restricts the
    accuracy of a many-to-many task to its last ``scored_steps`` steps (the recall of the copy
    task); the loss always averages over all steps.

    Example::

        >>> task = adding_task(50)
        >>> x, y = task.sample(64, torch.Generator().manual_seed(0))
        >>> round(task.baseline_loss, 4), float(task.loss(torch.ones_like(y), y)) > 0
        (0.1667, True)
    """

    name: str
    sampler: Callable[..., tuple[Tensor, Tensor]]
    input_size: int
    output_size: int
    seq_len: int
    objective: str
    baseline_loss: float
    baseline_accuracy: float | None = None
    many_to_many: bool = False
    scored_steps: int | None = None

    def __post_init__(self):
        check_choice("objective", self.objective, ("mse", "cross_entropy"))

    def sample(self, batch_size: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, device=None) -> tuple[Tensor, Tensor]:
        """Draw a batch ``(inputs, targets)`` from :attr:`sampler`."""
        return self.sampler(batch_size, generator=generator, dtype=dtype, device=device)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean MSE, or mean cross-entropy over batch (and steps) of logits ``prediction``."""
        if self.objective == "mse":
            return torch.nn.functional.mse_loss(prediction, target)
        return torch.nn.functional.cross_entropy(prediction.reshape(-1, prediction.shape[-1]),
                                                 target.reshape(-1))

    def accuracy(self, prediction: Tensor, target: Tensor) -> float | None:
        """Fraction of correct arg-max classes (``None`` for a regression task)."""
        if self.objective == "mse":
            return None
        if self.many_to_many and self.scored_steps is not None:
            prediction = prediction[:, -self.scored_steps:]
            target = target[:, -self.scored_steps:]
        return float((prediction.argmax(-1) == target).float().mean())


def adding_task(seq_len: int = 50) -> Task:
    """:func:`adding_problem` as a :class:`Task`: many-to-one MSE, baseline 1/6."""
    check_int("seq_len", seq_len, 2)
    return Task("adding", partial(adding_problem, seq_len=seq_len), input_size=2, output_size=1,
                seq_len=seq_len, objective="mse", baseline_loss=1 / 6)


def copy_task(n_remember: int = 10, delay: int = 50, n_symbols: int = 8) -> Task:
    """:func:`copy_memory` as a :class:`Task`: many-to-many over ``n_symbols + 1`` outputs
    (blank and symbols), baseline ``K ln(n) / (2K + D + 1)``, recall accuracy 1/n."""
    check_int("n_remember", n_remember, 1)
    check_int("delay", delay, 0)
    check_int("n_symbols", n_symbols, 1)
    total = 2 * n_remember + delay + 1
    sampler = partial(copy_memory, n_remember=n_remember, delay=delay, n_symbols=n_symbols)
    return Task("copy", sampler, input_size=n_symbols + 2, output_size=n_symbols + 1,
                seq_len=total, objective="cross_entropy",
                baseline_loss=n_remember * math.log(n_symbols) / total,
                baseline_accuracy=1 / n_symbols, many_to_many=True, scored_steps=n_remember)


def temporal_order_task(seq_len: int = 100) -> Task:
    """:func:`temporal_order` as a :class:`Task`: 4 classes, baseline ln 4, accuracy 1/4."""
    check_int("seq_len", seq_len, 10)
    return Task("temporal_order", partial(temporal_order, seq_len=seq_len), input_size=6,
                output_size=4, seq_len=seq_len, objective="cross_entropy",
                baseline_loss=math.log(4), baseline_accuracy=0.25)


def latch_task(seq_len: int = 50, info_len: int = 3, noise_std: float = 0.2) -> Task:
    """:func:`latch` as a :class:`Task`: 2 classes, baseline ln 2, accuracy 1/2."""
    latch(1, seq_len, info_len, noise_std, torch.Generator())              # validates
    sampler = partial(latch, seq_len=seq_len, info_len=info_len, noise_std=noise_std)
    return Task("latch", sampler, input_size=1, output_size=2, seq_len=seq_len,
                objective="cross_entropy", baseline_loss=math.log(2), baseline_accuracy=0.5)


def _draw_rows(inputs: Tensor, targets: Tensor, batch_size: int,
               generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32,
               device=None) -> tuple[Tensor, Tensor]:
    check_int("batch_size", batch_size, 1)
    g = _source(generator)
    rows = torch.randint(0, len(targets), (batch_size,), generator=g, device=g.device).cpu()
    return inputs[rows].to(device=device, dtype=dtype), targets[rows].to(device=device)


def digits_task(split: str = "train", permutation: Tensor | None = None) -> Task:
    r""":func:`sequential_digits` as a :class:`Task` that samples rows with replacement.

    The baseline is the best constant prediction, the class frequencies :math:`p_c` of the
    split: loss :math:`-\sum_c p_c \ln p_c`, accuracy :math:`\max_c p_c`.
    """
    inputs, targets = sequential_digits(split, permutation=permutation, dtype=torch.float64)
    freq = targets.bincount(minlength=10).double() / len(targets)
    entropy = float(-(freq * freq.log()).sum())
    return Task(f"digits_{split}", partial(_draw_rows, inputs, targets), input_size=1,
                output_size=10, seq_len=64, objective="cross_entropy", baseline_loss=entropy,
                baseline_accuracy=float(freq.max()))
