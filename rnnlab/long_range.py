r"""Long-range experiments: one cell of the comparison of recurrent models on memory tasks.

A *cell* is a task at a length T, a model recipe, a clipping choice and a seed.
:func:`run_cell` builds both, trains with :func:`rnnlab.train.fit` (one Adam step per fresh
batch), evaluates the loss :math:`L_{\text{held}}` on a fixed held-out set every
``eval_every`` steps and stops as soon as the cell is *solved*,

.. math:: L_{\text{held}} \le f_{\text{task}} \cdot L_{\text{baseline}},

where :math:`L_{\text{baseline}}` is the task's no-memory baseline
(:attr:`rnnlab.tasks.Task.baseline_loss`) and :math:`f_{\text{task}}` is
:data:`SOLVED_FRACTION`. The held-out set depends on the task and T only, so every model and
seed is judged on the same sequences: 256 fresh sequences for the synthetic tasks, the 355-image
test split for the digits (which trains on the other 1442).

Recipes (:data:`RECIPES`), all with a linear read-out of :math:`h_T` (or of every
:math:`h_t` for the copy task):

=======  ==================================================================  =======
name     recurrent core and initialisation                                   Adam lr
=======  ==================================================================  =======
tanh     ``rnnlab.RNN``, :math:`\tanh`, PyTorch's default init                1e-3
irnn     ``rnnlab.RNN``, ReLU, :math:`W_{hh} = I`, biases 0 (Le et al. 2015)  1e-3
lstm     ``rnnlab.LSTM``, PyTorch's default init                              1e-2
gru      ``rnnlab.GRU``, PyTorch's default init                               1e-2
=======  ==================================================================  =======

Tasks (:data:`TASKS`) and what T means for each: ``adding`` (T steps, two marked values),
``copy`` (:data:`COPY_REMEMBER` symbols out of :data:`COPY_SYMBOLS`, recalled after a delay
:math:`D = T - 2K - 1`, so the whole sequence has T steps), ``temporal_order`` (T steps) and
``digits`` (the 8×8 digits read pixel by pixel: T = 64 only).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rnnlab.checks import check_choice, check_int, check_number
from rnnlab.init import identity_
from rnnlab.tasks import (
    Task,
    adding_task,
    copy_task,
    digits_task,
    sequential_digits,
    temporal_order_task,
)
from rnnlab.train import SequenceModel, evaluate, fit, make_model

__all__ = ["Recipe", "RECIPES", "TASKS", "SOLVED_FRACTION", "COPY_REMEMBER", "COPY_SYMBOLS",
           "HELD_OUT_SEED", "make_task", "build_model", "held_out_set", "input_grad_norms",
           "input_reach", "run_cell", "summarize"]

COPY_REMEMBER = 5                # K: symbols to remember in the copy task
COPY_SYMBOLS = 4                 # n: alphabet of the copy task
HELD_OUT_SEED = 20_240_601       # the held-out sequences: one fixed stream per task and T
HELD_OUT_SIZE = 256
DIGITS_LENGTH = 64


@dataclass(frozen=True)
class Recipe:
    """How a model of the comparison is built and trained: ``kind`` and ``nonlinearity`` for
    :func:`rnnlab.train.make_model`, ``identity`` for :func:`rnnlab.init.identity_` of
    :math:`W_{hh}`, and the Adam learning rate ``lr``."""

    kind: str
    nonlinearity: str = "tanh"
    identity: bool = False
    lr: float = 1e-3


RECIPES: dict[str, Recipe] = {
    "tanh": Recipe("rnn", "tanh", lr=1e-3),
    "irnn": Recipe("rnn", "relu", identity=True, lr=1e-3),
    "lstm": Recipe("lstm", lr=1e-2),
    "gru": Recipe("gru", lr=1e-2),
}


def _copy(seq_len: int) -> Task:
    delay = seq_len - 2 * COPY_REMEMBER - 1
    if delay < 0:
        raise ValueError(f"seq_len: expected >= {2 * COPY_REMEMBER + 1} for the copy task, "
                         f"got {seq_len}")
    return copy_task(COPY_REMEMBER, delay, COPY_SYMBOLS)


def _digits(seq_len: int) -> Task:
    if seq_len != DIGITS_LENGTH:
        raise ValueError(f"seq_len: expected {DIGITS_LENGTH} for the digits task, got {seq_len}")
    return digits_task("train")


TASKS: dict[str, Callable[[int], Task]] = {
    "adding": adding_task,
    "copy": _copy,
    "temporal_order": temporal_order_task,
    "digits": _digits,
}

SOLVED_FRACTION: dict[str, float] = {"adding": 0.06, "copy": 0.25, "temporal_order": 0.25,
                                     "digits": 0.25}


def make_task(task: str, seq_len: int) -> Task:
    """The :class:`~rnnlab.tasks.Task` named ``task`` (a key of :data:`TASKS`) at length T."""
    check_choice("task", task, TASKS)
    check_int("seq_len", seq_len, 2)
    return TASKS[task](seq_len)


def build_model(task: Task, model: str, hidden_size: int, seed: int) -> SequenceModel:
    """The recipe ``model`` (a key of :data:`RECIPES`) sized for ``task``, drawn with ``seed``.

    The draw is :func:`rnnlab.train.make_model`'s; the IRNN then gets :math:`W_{hh} = I` and
    zero biases (:func:`rnnlab.init.identity_`), its :math:`W_{ih}` stays as drawn.
    """
    check_choice("model", model, RECIPES)
    recipe = RECIPES[model]
    net = make_model(task, recipe.kind, hidden_size, nonlinearity=recipe.nonlinearity,
                     seed=seed)
    if recipe.identity:
        identity_(net.core)
    return net


def held_out_set(task: str, seq_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed held-out ``(inputs (N, T, I), targets)`` of ``task`` at length T.

    :data:`HELD_OUT_SIZE` sequences from the generator seeded with :data:`HELD_OUT_SEED` for
    the synthetic tasks (training batches come from generators seeded with the run's seed, a
    different stream); the test split (N = 355) for the digits.
    """
    spec = make_task(task, seq_len)
    if task == "digits":
        return sequential_digits("test", device=device)
    return spec.sample(HELD_OUT_SIZE, torch.Generator().manual_seed(HELD_OUT_SEED),
                       device=device)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def input_grad_norms(net: SequenceModel, task: Task, inputs: torch.Tensor,
                     targets: torch.Tensor) -> torch.Tensor:
    r""":math:`\lVert \partial L_T / \partial x_t \rVert` for t = 1..T, a (T,) float64 tensor.

    :math:`L_T` is the task's loss on the output at the last step (the whole loss of a
    many-to-one task), the norm is taken over the batch and the I input channels of
    ``inputs`` (B, T, I). Computed in float64 on a copy of ``net``, so neither the model nor
    its ``.grad`` change and a gradient :math:`10^{-50}` times smaller than the last one does
    not underflow. Detached.
    """
    twin = copy.deepcopy(net).double()
    x = inputs.detach().double().requires_grad_()
    prediction = twin(x)
    if twin.many_to_many:
        prediction, targets = prediction[:, -1], targets[:, -1]               # (B, O), (B,)
    target = targets.double() if targets.is_floating_point() else targets
    (grad,) = torch.autograd.grad(task.loss(prediction, target), x)
    return torch.linalg.vector_norm(grad, dim=(0, 2))                         # (T,)


def input_reach(net: SequenceModel, task: Task, inputs: torch.Tensor,
                targets: torch.Tensor) -> float | None:
    r"""The change of the gradient, in decades, from the last input back to the first one,

    .. math:: r = \log_{10} \frac{\lVert \partial L_T / \partial x_1 \rVert}
                              {\lVert \partial L_T / \partial x_T \rVert}

    (the two ends of :func:`input_grad_norms`). Negative when the gradient vanishes with the
    lag; None when not finite.
    """
    norms = input_grad_norms(net, task, inputs, targets)
    with torch.no_grad():
        ratio = float(torch.log10(norms[0]) - torch.log10(norms[-1]))
    return _finite_or_none(ratio)


def run_cell(task: str, model: str, seq_len: int, seed: int, clip: float | None, *,
             steps: int, hidden_size: int = 32, batch_size: int = 32, eval_every: int = 25,
             device=None) -> dict:
    r"""Train one cell and summarise it as a JSON-ready ``dict``.

    Trains ``build_model(task, model, hidden_size, seed)`` with Adam at the recipe's learning
    rate for at most ``steps`` steps of ``batch_size`` fresh sequences (data seeded by
    ``seed``), clipping the gradient norm to ``clip`` when it is a number
    (:func:`rnnlab.clipping.clip_grad_norm_`, via ``fit(clip=("norm", clip))``). The held-out
    loss is evaluated every ``eval_every`` steps and at the end; the run stops at the first
    evaluation at or below the solved threshold.

    Returns a dict with the configuration (``task, model, seq_len, seed, clip, hidden_size,
    batch_size, lr, steps_budget, eval_every``), ``baseline`` (the task's baseline loss),
    ``threshold`` (``SOLVED_FRACTION[task] * baseline``), ``solved`` (bool),
    ``steps_to_solve`` (the step of the first evaluation at or below the threshold, else
    None), ``steps_run``, ``stopped`` (``fit``'s reason: ``"callback"`` when solved,
    ``"steps"`` or ``"nonfinite"``), ``final_loss`` and ``final_accuracy`` (held-out, after
    the last step taken; None when not finite or not a classification task),
    ``eval_step``/``eval_loss`` (the held-out curve, None for non-finite values),
    ``clip_fraction`` (fraction of steps whose norm exceeded ``clip``), ``max_grad_norm`` (the
    largest finite pre-clip gradient norm), ``reach_init``/``reach_final``
    (:func:`input_reach` on the held-out set before and after training) and ``cpu_seconds``
    (process CPU time of the training).
    Deterministic on the CPU for the same arguments, except ``cpu_seconds``.
    """
    check_choice("task", task, TASKS)
    check_choice("model", model, RECIPES)
    for name, value, minimum in (("seq_len", seq_len, 2), ("seed", seed, 0),
                                 ("steps", steps, 1), ("hidden_size", hidden_size, 1),
                                 ("batch_size", batch_size, 1), ("eval_every", eval_every, 1)):
        check_int(name, value, minimum)
    if clip is not None:
        clip = check_number("clip", clip, positive=True)
    spec = make_task(task, seq_len)
    net = build_model(spec, model, hidden_size, seed)
    if device is not None:
        net.to(device)
    device = next(net.parameters()).device
    held_x, held_y = held_out_set(task, seq_len, device=device)
    threshold = SOLVED_FRACTION[task] * spec.baseline_loss
    curve: list[tuple[int, float, float | None]] = []

    def watch(step: int, module, history) -> bool:
        if step % eval_every and step != steps:
            return False
        loss, accuracy = evaluate(module, spec, held_x, held_y)
        curve.append((step, loss, accuracy))
        return loss <= threshold

    reach_init = input_reach(net, spec, held_x, held_y)
    start = time.process_time()
    history = fit(net, spec, steps, batch_size=batch_size, optimizer="adam",
                  lr=RECIPES[model].lr, clip=None if clip is None else ("norm", clip),
                  seed=seed, progress=False, callback=watch)
    cpu_seconds = time.process_time() - start
    if not curve or curve[-1][0] != history.steps:
        curve.append((history.steps, *evaluate(net, spec, held_x, held_y)))
    solved = [step for step, loss, _ in curve if loss <= threshold]
    finite_norms = [n for n in history.grad_norm if math.isfinite(n)]
    return {
        "task": task, "model": model, "seq_len": seq_len, "seed": seed,
        "clip": clip, "hidden_size": hidden_size,
        "batch_size": batch_size, "lr": RECIPES[model].lr, "steps_budget": steps,
        "eval_every": eval_every, "baseline": spec.baseline_loss, "threshold": threshold,
        "solved": bool(solved), "steps_to_solve": solved[0] if solved else None,
        "steps_run": history.steps, "stopped": history.stopped,
        "final_loss": _finite_or_none(curve[-1][1]), "final_accuracy": curve[-1][2],
        "eval_step": [step for step, _, _ in curve],
        "eval_loss": [_finite_or_none(loss) for _, loss, _ in curve],
        "clip_fraction": history.clip_fraction,
        "max_grad_norm": max(finite_norms) if finite_norms else None,
        "reach_init": reach_init, "reach_final": input_reach(net, spec, held_x, held_y),
        "cpu_seconds": cpu_seconds,
    }


def summarize(cells: list[dict]) -> list[dict]:
    """One row per (task, seq_len, model, clip) of :func:`run_cell` results, in first-seen order.

    Each row holds the key, ``runs`` (number of seeds), ``solved`` (how many were solved),
    ``steps_median`` (median ``steps_to_solve`` over the solved seeds, None if none),
    ``ratio_median`` (median over seeds of ``final_loss / baseline``, a diverged seed counted
    as ``inf``) and ``diverged`` (seeds stopped by a non-finite loss or gradient: their
    parameters were kept from the step before, but the held-out loss there is meaningless).
    """
    groups: dict[tuple, list[dict]] = {}
    for cell in cells:
        key = (cell["task"], cell["seq_len"], cell["model"], cell["clip"])
        groups.setdefault(key, []).append(cell)
    rows = []
    for (task, seq_len, model, clip), runs in groups.items():
        steps = [r["steps_to_solve"] for r in runs if r["solved"]]
        ratios = [math.inf if r["final_loss"] is None or r["stopped"] == "nonfinite"
                  else r["final_loss"] / r["baseline"] for r in runs]
        rows.append({"task": task, "seq_len": seq_len, "model": model, "clip": clip,
                     "runs": len(runs), "solved": len(steps),
                     "steps_median": statistics.median(steps) if steps else None,
                     "ratio_median": statistics.median(ratios),
                     "diverged": sum(r["stopped"] == "nonfinite" for r in runs)})
    return rows
