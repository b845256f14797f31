r"""Where the gradient goes: ‖∂L/∂h_t‖ through time, norm histories, 1-D loss slices.

Back-propagation through time sends the loss gradient backwards through the states,

.. math::
    \frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial \hat y_t}
        \frac{\partial \hat y_t}{\partial h_t}
      + \frac{\partial L}{\partial h_{t+1}} \frac{\partial h_{t+1}}{\partial h_t},
    \qquad \frac{\partial h_{t+1}}{\partial h_t} = \mathrm{diag}(\phi'(a_{t+1})) W_{hh},

so :math:`\lVert \partial L/\partial h_t \rVert` shrinks or grows geometrically with the lag
:math:`T - t` when the Jacobians do. :func:`hidden_grads` computes these *total* derivatives
exactly: it runs the recurrent core with :func:`rnnlab.loop.unroll` and differentiates the loss
with respect to the states that loop hands out, each the tensor that fed both the read-out and
the next step. (The output tensor of a fused forward would only give the direct term, the first
one above.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.checks import check_choice, check_int, check_type
from rnnlab.history import History, clip_fraction
from rnnlab.layout import check_recurrent
from rnnlab.loop import unroll
from rnnlab.models import SequenceModel

__all__ = ["hidden_grads", "hidden_grad_norms", "HiddenGradRecorder", "NormHistory",
           "grad_norm_history", "loss_slice"]


def hidden_grads(model: nn.Module, input: Tensor, target: Tensor | None = None,
                 loss_fn: Callable[..., Tensor] | None = None, *, hx=None, layer: int = -1,
                 state: str = "h") -> Tensor:
    r"""The total derivatives :math:`\partial L/\partial h_t`, t = 1..T, as a (T, B, H) tensor.

    Args:
        model: an :class:`rnnlab.models.SequenceModel` (prediction = its read-out, last step or
            every step), or a bare ``torch.nn.RNN/LSTM/GRU`` (prediction = its output sequence).
            Unidirectional, any ``num_layers``, rnnlab's or torch's modules.
        input: (B, T, I) if the core is ``batch_first``, else (T, B, I); or unbatched (T, I),
            and then the result is (T, H).
        target, loss_fn: :math:`L` = ``loss_fn(prediction, target)`` (``loss_fn(prediction)``
            when ``target`` is None), a scalar, e.g. ``task.loss``.
        hx: initial state in torch's format; zeros when None.
        layer: which layer's state (default the top one).
        state: ``"h"``, or ``"c"`` for the cell state of an LSTM.

    The model's mode (train/eval) is used as it is; parameters' ``.grad`` are not touched.
    """
    core = model.core if isinstance(model, SequenceModel) else model
    check_recurrent("model", core)
    if core.bidirectional:
        raise ValueError("model: per-step gradients need a unidirectional core, "
                         "got bidirectional=True")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (prediction, target) -> loss, "
                        f"got {type(loss_fn).__name__}")
    is_lstm = core.mode == "LSTM"
    check_choice("state", state, ("h", "c") if is_lstm else ("h",))
    check_int("layer", layer)
    if not -core.num_layers <= layer < core.num_layers:
        raise ValueError(f"layer: expected an index into {core.num_layers} layers, got {layer}")
    if isinstance(input, Tensor) and input.is_floating_point():
        input = input.detach().requires_grad_()   # the states need grad even if nothing else does
    with torch.enable_grad():
        output, _, states = unroll(core, input, hx, return_states=True)
        prediction = model.head(output) if model is not core else output
        loss = loss_fn(prediction) if target is None else loss_fn(prediction, target)
        trajectory = states[layer % core.num_layers][1:]             # s_1 .. s_T
        if is_lstm:
            trajectory = [pair[1] if state == "c" else pair[0] for pair in trajectory]
        grads = torch.autograd.grad(loss, trajectory, allow_unused=True,
                                    materialize_grads=True)
    return torch.stack(grads)                                          # (T, [B,] H)


def hidden_grad_norms(model: nn.Module, input: Tensor, target: Tensor | None = None,
                      loss_fn: Callable[..., Tensor] | None = None, *, hx=None, layer: int = -1,
                      state: str = "h", per_sample: bool = False) -> Tensor:
    r""":math:`\lVert \partial L/\partial h_t \rVert_2` for t = 1..T (see :func:`hidden_grads`).

    Returns (T,): the norm of the whole (B, H) gradient at step t; or (B, T) per sequence when
    ``per_sample`` (with a batch-mean loss each carries the factor 1/B). Detached.
    """
    grads = hidden_grads(model, input, target, loss_fn, hx=hx, layer=layer, state=state)
    if per_sample:
        return torch.linalg.vector_norm(grads, dim=-1).movedim(0, -1).detach()   # (B, T)
    return torch.linalg.vector_norm(grads.flatten(1), dim=1).detach()           # (T,)


class HiddenGradRecorder:
    """A :func:`rnnlab.train.fit` callback: every ``every`` steps, record
    :func:`hidden_grad_norms` of the model on one fixed batch.

    After training, ``steps`` lists the steps and ``norms`` is a (K, T) array.

    Example::

        recorder = HiddenGradRecorder(x, y, task.loss, every=100)
        fit(model, task, 1000, callback=recorder)
        plot_hidden_grad_norms(dict(zip(recorder.steps, recorder.norms)))
    """

    def __init__(self, input: Tensor, target: Tensor | None, loss_fn: Callable[..., Tensor],
                 every: int = 100):
        check_int("every", every, 1)
        self.input, self.target, self.loss_fn, self.every = input, target, loss_fn, every
        self.steps: list[int] = []
        self._norms: list[np.ndarray] = []

    def __call__(self, step: int, model: nn.Module, history=None) -> bool:
        if step % self.every == 0:
            self.steps.append(step)
            self._norms.append(hidden_grad_norms(model, self.input, self.target,
                                                 self.loss_fn).cpu().numpy())
        return False

    @property
    def norms(self) -> np.ndarray:
        """(K, T): one row per recorded step."""
        return np.stack(self._norms) if self._norms else np.zeros((0, 0))


class NormHistory(NamedTuple):
    """Per-step arrays of a training run (step is 1-based)."""

    step: np.ndarray
    norm: np.ndarray
    clipped: np.ndarray
    threshold: np.ndarray
    loss: np.ndarray

    def summary(self) -> dict[str, float]:
        """Median and maximum gradient norm, fraction of clipped steps."""
        return {"median": float(np.median(self.norm)), "max": float(np.max(self.norm)),
                "clip_fraction": clip_fraction(self.clipped)}


def grad_norm_history(history: History) -> NormHistory:
    """The gradient-norm history of a :class:`rnnlab.history.History` as numpy arrays."""
    check_type("history", history, History, "an rnnlab History")
    if not history.grad_norm:
        raise ValueError(f"history: expected a History with at least one step, got {history!r}")
    n = len(history.grad_norm)
    return NormHistory(np.arange(1, n + 1), np.asarray(history.grad_norm, dtype=float),
                       np.asarray(history.clipped, dtype=bool),
                       np.asarray(history.threshold, dtype=float),
                       np.asarray(history.loss, dtype=float))


def loss_slice(model: nn.Module, loss_closure: Callable[[nn.Module], Tensor],
               alphas: Sequence[float] | np.ndarray | Tensor,
               direction: str | Sequence[Tensor] = "gradient", *,
               generator: torch.Generator | None = None) -> np.ndarray:
    r"""A 1-D slice of the loss landscape: :math:`L(\theta + \alpha d)` for each α.

    ``loss_closure(model)`` returns the scalar loss (e.g. on a fixed batch). ``direction`` is
    ``"gradient"`` (:math:`d = \nabla L(\theta)/\lVert\nabla L(\theta)\rVert`, so α is the length
    of a gradient step), ``"random"`` (a unit-norm Gaussian direction from ``generator``), or
    tensors shaped like ``model.parameters()`` (used as given). The parameters are restored
    afterwards. Returns a float array of ``len(alphas)``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if isinstance(direction, str):
        if direction == "gradient":
            d = list(torch.autograd.grad(loss_closure(model), params))
        elif direction == "random":
            d = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
                 for p in params]
        else:
            raise ValueError(f"direction: expected 'gradient', 'random' or tensors, "
                             f"got {direction!r}")
        total = torch.sqrt(sum((v ** 2).sum() for v in d))
        d = [v / total for v in d]
    else:
        d = list(direction)
        if len(d) != len(params) or any(v.shape != p.shape for v, p in zip(d, params, strict=True)):
            raise ValueError("direction: expected one tensor per parameter with its shape")
    original = [p.detach().clone() for p in params]
    losses = []
    try:
        with torch.no_grad():
            for alpha in torch.as_tensor(alphas, dtype=torch.float64).tolist():
                for p, p0, v in zip(params, original, d, strict=True):
                    p.copy_(p0 + alpha * v)
                losses.append(float(loss_closure(model)))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, original, strict=True):
                p.copy_(p0)
    return np.asarray(losses)
