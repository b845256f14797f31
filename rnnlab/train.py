r"""A small, deterministic fit loop for the tasks of :mod:`rnnlab.tasks`.

:func:`make_model` builds a :class:`~rnnlab.models.SequenceModel` (a recurrent core and a
linear read-out) sized for a task, and :func:`fit` trains it with one optimizer step per fresh
batch, optionally clipping the gradient, and records per step the loss, the gradient norm
:math:`\lVert g \rVert_2` *before* clipping, whether the step was clipped, the threshold and the
wall time (:class:`~rnnlab.history.History`).
Data come from a generator seeded by ``seed``; dropout draws from the global RNG, which
:func:`fit` forks and seeds, so the caller's RNG is left as it was and the same model state with
the same ``seed`` gives the same history on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnnlab.checks import check_choice, check_int, check_number, check_type
from rnnlab.clipping import clip_grad_norm_, clip_grad_value_, grad_norm
from rnnlab.history import History
from rnnlab.models import GRU, LSTM, RNN, SequenceModel
from rnnlab.tasks import Task

__all__ = ["SequenceModel", "make_model", "History", "fit", "evaluate", "eval_generator"]

_EVAL_SEED_OFFSET = 2**32          # the held-out batch comes from a stream apart from training
_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
               "rmsprop": torch.optim.RMSprop}
_KINDS = ("rnn", "lstm", "gru")


def eval_generator(seed: int) -> torch.Generator:
    """The generator of the held-out batch of a run seeded with ``seed``: a stream apart from
    the training batches' (``seed + 2**32``), shared by :func:`fit` and
    :func:`rnnlab.ensemble.fit_members` so that both evaluate on the same batch."""
    return torch.Generator().manual_seed(seed + _EVAL_SEED_OFFSET)


def make_model(task: Task, kind: str = "lstm", hidden_size: int = 64, *, num_layers: int = 1,
               nonlinearity: str = "tanh", seed: int | None = None,
               unroll: bool = False) -> SequenceModel:
    """A :class:`SequenceModel` with an rnnlab ``RNN``/``LSTM``/``GRU`` core sized for ``task``.

    With ``seed`` the parameters are drawn from ``torch.manual_seed(seed)`` inside a forked RNG
    (the caller's global RNG is left untouched); with ``None`` from the global RNG, as torch does.
    """
    check_type("task", task, Task, "an rnnlab.tasks.Task")
    check_choice("kind", kind, _KINDS)
    extra = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    cls = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind]

    def build() -> SequenceModel:
        core = cls(task.input_size, hidden_size, num_layers=num_layers, batch_first=True,
                   **extra)
        return SequenceModel(core, task.output_size, many_to_many=task.many_to_many,
                             unroll=unroll)

    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _clipper(clip) -> Callable[[list[nn.Parameter]], tuple[float, float, bool]]:
    """Turn the ``clip`` argument into ``params -> (norm before, threshold, clipped)``."""
    if clip is None:
        return lambda params: (float(grad_norm(params)), math.nan, False)
    if callable(clip):
        def adaptive(params):
            norm, threshold, clipped = clip(params)
            return float(norm), float(threshold), bool(clipped)
        return adaptive
    check_type("clip", clip, tuple, "None, ('norm', c), ('value', c) or a clipper callable")
    if len(clip) != 2:
        raise ValueError(f"clip: expected ('norm', c) or ('value', c), got {clip!r}")
    kind = check_choice("clip[0]", clip[0], ("norm", "value"))
    c = check_number("clip[1]", clip[1], positive=True)
    if kind == "norm":
        def by_norm(params):
            norm = float(clip_grad_norm_(params, c))
            return norm, c, norm > c
        return by_norm

    def by_value(params):
        norm = float(grad_norm(params))
        clipped = any(bool((p.grad.abs() > c).any()) for p in params if p.grad is not None)
        clip_grad_value_(params, c)
        return norm, c, clipped
    return by_value


def _optimizer(optimizer, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {tuple(_OPTIMIZERS)} or a "
                             f"torch.optim.Optimizer, got {optimizer!r}")
        return _OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    if callable(optimizer):
        return optimizer(model.parameters())
    raise TypeError(f"optimizer: expected a name, a torch.optim.Optimizer or a callable "
                    f"params -> Optimizer, got {type(optimizer).__name__}")


def evaluate(model: nn.Module, task: Task, inputs: Tensor, targets: Tensor,
             loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None) -> tuple[float,
                                                                                 float | None]:
    """``(loss, accuracy)`` of ``model`` on one batch, in eval mode and without gradients
    (accuracy ``None`` for a regression task or when ``task`` is not a :class:`Task`)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            prediction = model(inputs)
            loss = float((loss_fn or task.loss)(prediction, targets))
            accuracy = task.accuracy(prediction, targets) if isinstance(task, Task) else None
    finally:
        model.train(was_training)
    return loss, accuracy


def fit(model: nn.Module, task: Task | Callable[..., tuple[Tensor, Tensor]], steps: int, *,
        batch_size: int = 64, optimizer="adam", lr: float = 1e-3, clip=None,
        target_loss: float | None = None, seed: int = 0, progress: bool = True, device=None,
        eval_every: int | None = None, eval_batch_size: int = 512,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        callback: Callable[[int, nn.Module, History], bool | None] | None = None) -> History:
    r"""Train ``model`` on fresh batches of ``task`` for up to ``steps`` optimizer steps.

    Each step: draw ``(x, y)`` of ``batch_size`` from a generator seeded with ``seed``, compute
    :math:`L = \text{loss}(\text{model}(x), y)`, back-propagate, record :math:`\lVert g\rVert_2`,
    clip, step. Arguments:

    * ``task``: a :class:`~rnnlab.tasks.Task`, or a sampler ``(batch_size, generator=...,
      device=...) -> (x, y)`` together with ``loss_fn``.
    * ``optimizer``: ``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"`` (built with ``lr``), a
      built ``torch.optim.Optimizer``, or a callable ``params -> Optimizer``.
    * ``clip``: ``None``; ``("norm", c)`` rescales g to norm c when :math:`\lVert g\rVert > c`
      (:func:`rnnlab.clipping.clip_grad_norm_`); ``("value", c)`` clamps every component to
      [-c, c]; or an adaptive clipper whose ``__call__(parameters) -> (norm, threshold,
      clipped)``.
    * ``target_loss``: stop early once the loss on a fixed held-out batch (``eval_batch_size``
      draws from a stream apart from training) is at most this; it is evaluated every
      ``eval_every`` steps (default 25 when ``target_loss`` is set, else no evaluation).
    * ``device``: move the model there and sample there (default: where the model is).
    * ``callback(step, model, history)`` after each step (1-based); returning ``True`` stops.
    * ``progress``: a ``tqdm.auto`` bar (in notebooks pass ``False``, or mark the cell
      ``# NBVAL_IGNORE_OUTPUT``).

    Returns a :class:`History`; deterministic on the CPU for the same model state and ``seed``.
    """
    check_type("model", model, nn.Module, "a torch.nn.Module")
    if not isinstance(task, Task) and not callable(task):
        raise TypeError(f"task: expected an rnnlab.tasks.Task or a sampler callable, "
                        f"got {type(task).__name__}")
    if not isinstance(task, Task) and loss_fn is None:
        raise ValueError("loss_fn: required when task is a plain sampler, got None")
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("eval_batch_size", eval_batch_size)):
        check_int(name, value, 1)
    if eval_every is not None:
        check_int("eval_every", eval_every, 1)
    if target_loss is not None:
        check_number("target_loss", target_loss)
    clip_step = _clipper(clip)
    if eval_every is None and target_loss is not None:
        eval_every = 25
    loss_fn = loss_fn or task.loss
    if device is not None:
        model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device if params else torch.device(device or "cpu")
    opt = _optimizer(optimizer, model, lr)
    if isinstance(task, Task):
        def sample(n, generator, device):
            return task.sample(n, generator, dtype=params[0].dtype, device=device)
    else:
        sample = task
    history = History(baseline_loss=task.baseline_loss if isinstance(task, Task) else None)
    train_gen = torch.Generator().manual_seed(seed)
    if eval_every is not None:
        eval_x, eval_y = sample(eval_batch_size,
                                generator=eval_generator(seed),
                                device=device)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # imported here: only when a bar is wanted

        bar = tqdm(total=steps, desc="fit", leave=False)
    forked = [device.index or 0] if device.type == "cuda" else []
    model.train()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        for step in range(1, steps + 1):
            x, y = sample(batch_size, generator=train_gen, device=device)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm, threshold, clipped = clip_step(params)
            value = loss.detach().item()
            finite = math.isfinite(value) and math.isfinite(norm)
            if finite:
                opt.step()
            history.loss.append(value)
            history.grad_norm.append(norm)
            history.clipped.append(clipped)
            history.threshold.append(threshold)
            history.time.append(time.perf_counter() - start)
            if bar is not None:
                bar.update()
                if step % 10 == 0 or step == steps:
                    bar.set_postfix(loss=f"{value:.3g}", refresh=False)
            if not finite:
                history.stopped = "nonfinite"
                break
            if eval_every is not None and (step % eval_every == 0 or step == steps):
                eval_loss, eval_acc = evaluate(model, task, eval_x, eval_y, loss_fn)
                history.eval_step.append(step)
                history.eval_loss.append(eval_loss)
                history.eval_accuracy.append(eval_acc)
                if target_loss is not None and eval_loss <= target_loss:
                    history.stopped = "target"
                    break
            if callback is not None and callback(step, model, history):
                history.stopped = "callback"
                break
    if bar is not None:
        bar.close()
    return history
