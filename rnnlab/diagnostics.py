r"""Where the gradient goes: ‖∂L/∂h_t‖ through time, norm histories, 1-D loss slices.

Back-propagation through time sends the loss gradient backwards through the states,

.. math::
    \frac{\partial L}{\partial h_t} = \frac{\partial L}{\partial \hat y_t}
        \frac{\partial \hat y_t}{\partial h_t}
      + \frac{\partial L}{\partial h_{t+1}} \frac{\partial h_{t+1}}{\partial h_t},
    \qquad \frac{\partial h_{t+1}}{\partial h_t} = \mathrm{diag}(\phi'(a_{t+1})) W_{hh},

so :math:`\lVert \partial L/\partial h_t \rVert` shrinks or grows geometrically with the lag
:math:`T - t` when the Jacobians do. :func:`hidden_grads` computes these *total* derivatives
exactly: it runs the recurrent core one step at a time (``core(x[:, t:t+1], hx)``, the same
arithmetic as the fused forward) so that every state :math:`h_t` is a node of the autograd graph
that feeds both the read-out and the next step. (The output tensor of a fused forward would
only give the direct term, the first one above.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["hidden_grads", "hidden_grad_norms", "HiddenGradRecorder", "NormHistory",
           "grad_norm_history", "loss_slice"]


def _split(model: nn.Module) -> tuple[nn.RNNBase, nn.Module | None, bool]:
    """``(core, readout or None, many_to_many)`` of a SequenceModel or a bare core."""
    core = getattr(model, "core", model)
    if not isinstance(core, nn.RNNBase):
        raise TypeError(f"model: expected a SequenceModel or a torch.nn.RNN/LSTM/GRU, "
                        f"got {type(model).__name__}")
    if core.bidirectional:
        raise ValueError("model: per-step gradients need a unidirectional core, "
                         "got bidirectional=True")
    readout = getattr(model, "readout", None) if core is not model else None
    return core, readout, bool(getattr(model, "many_to_many", True))


def _single_layers(core: nn.RNNBase) -> list[nn.RNNBase]:
    """One single-layer module per layer of ``core``, sharing its parameters (no copies).

    Running the layers as separate calls makes each layer's state h_t^{(l)} the tensor that
    feeds both the layer above and the next step, so its gradient is the total derivative.
    """
    base = next(cls for cls in (nn.LSTM, nn.GRU, nn.RNN) if isinstance(core, cls))
    twins = []
    for index in range(core.num_layers):
        kwargs = {"input_size": core.input_size if index == 0 else
                  (core.proj_size or core.hidden_size), "hidden_size": core.hidden_size,
                  "bias": core.bias, "batch_first": True, "device": "meta"}
        if base is nn.LSTM:
            kwargs["proj_size"] = core.proj_size
        if base is nn.RNN:
            kwargs["nonlinearity"] = core.nonlinearity
        twin = base(**kwargs)                            # meta: no memory, no RNG drawn
        for name in twin._flat_weights_names:            # weight_ih_l0, ..., weight_hr_l0
            setattr(twin, name, getattr(core, name[:-1] + str(index)))
        twins.append(twin)
    return twins


def _layer_states(core: nn.RNNBase, hx, x: Tensor) -> list:
    """Split torch's ``hx`` ((layers, B, H) or (h, c)) into per-layer states; zeros if None."""
    if hx is None:
        batch = x.shape[0]
        h = x.new_zeros(core.num_layers, batch, core.proj_size or core.hidden_size)
        hx = (h, x.new_zeros(core.num_layers, batch, core.hidden_size)) \
            if isinstance(core, nn.LSTM) else h
    if isinstance(core, nn.LSTM):
        return [(hx[0][i:i + 1], hx[1][i:i + 1]) for i in range(core.num_layers)]
    return [hx[i:i + 1] for i in range(core.num_layers)]


def hidden_grads(model: nn.Module, input: Tensor, target: Tensor | None = None,
                 loss_fn: Callable[..., Tensor] | None = None, *, hx=None, layer: int = -1,
                 state: str = "h") -> Tensor:
    r"""The total derivatives :math:`\partial L/\partial h_t`, t = 1..T, as a (T, B, H) tensor.

    Args:
        model: an :class:`rnnlab.train.SequenceModel` (prediction = its read-out, last step or
            every step), or a bare ``torch.nn.RNN/LSTM/GRU`` (prediction = its output sequence).
            Unidirectional, any ``num_layers``, rnnlab's or torch's modules.
        input: (B, T, I) if the core is ``batch_first``, else (T, B, I).
        target, loss_fn: :math:`L` = ``loss_fn(prediction, target)`` (``loss_fn(prediction)``
            when ``target`` is None), a scalar, e.g. ``task.loss``.
        hx: initial state in torch's format; zeros when None.
        layer: which layer's state (default the top one).
        state: ``"h"``, or ``"c"`` for the cell state of an LSTM.

    The model's mode (train/eval) is used as it is; parameters' ``.grad`` are not touched.
    """
    core, readout, many_to_many = _split(model)
    if loss_fn is None or not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable (prediction, target) -> loss, "
                        f"got {loss_fn!r}")
    if not isinstance(input, Tensor) or input.dim() != 3:
        raise ValueError(f"input: expected a batched 3-D tensor, got "
                         f"{tuple(input.shape) if isinstance(input, Tensor) else input!r}")
    is_lstm = isinstance(core, nn.LSTM)
    if state not in ("h", "c") or (state == "c" and not is_lstm):
        allowed = "'h' or 'c' (LSTM)" if is_lstm else "'h' (only an LSTM has 'c')"
        raise ValueError(f"state: expected {allowed}, got {state!r}")
    if not -core.num_layers <= layer < core.num_layers:
        raise ValueError(f"layer: expected an index into {core.num_layers} layers, got {layer}")
    x = input if core.batch_first else input.transpose(0, 1)        # (B, T, I)
    twins = _single_layers(core)
    hs = _layer_states(core, hx, x)                                  # per layer: (1, B, .)
    states, tops = [], []
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN wants its own flat weight buffer
        for t in range(x.shape[1]):
            inp = x[:, t:t + 1]                                      # (B, 1, I)
            for index, twin in enumerate(twins):
                _, hs[index] = twin(inp, hs[index])
                h = hs[index][0] if is_lstm else hs[index]           # (1, B, H_out)
                if index == layer % core.num_layers:
                    states.append(hs[index][1] if state == "c" else h)
                inp = h.transpose(0, 1)                              # (B, 1, H_out)
                if core.dropout and core.training and index < core.num_layers - 1:
                    inp = nn.functional.dropout(inp, core.dropout, training=True)
            tops.append(h[0])                                        # (B, H_out)
    output = torch.stack(tops, dim=1)               # (B, T, H_out)
    if readout is not None:
        prediction = readout(output if many_to_many else output[:, -1])
    else:
        prediction = output if core.batch_first else output.transpose(0, 1)
    loss = loss_fn(prediction) if target is None else loss_fn(prediction, target)
    grads = torch.autograd.grad(loss, states, allow_unused=True, materialize_grads=True)
    return torch.stack([g[0] for g in grads])       # (T, B, H)


def hidden_grad_norms(model: nn.Module, input: Tensor, target: Tensor | None = None,
                      loss_fn: Callable[..., Tensor] | None = None, *, hx=None, layer: int = -1,
                      state: str = "h", per_sample: bool = False) -> Tensor:
    r""":math:`\lVert \partial L/\partial h_t \rVert_2` for t = 1..T (see :func:`hidden_grads`).

    Returns (T,): the norm of the whole (B, H) gradient at step t; or (B, T) per sequence when
    ``per_sample`` (with a batch-mean loss each carries the factor 1/B). Detached.
    """
    grads = hidden_grads(model, input, target, loss_fn, hx=hx, layer=layer, state=state)
    if per_sample:
        return torch.linalg.vector_norm(grads, dim=-1).T.detach()     # (B, T)
    return torch.linalg.vector_norm(grads, dim=(1, 2)).detach()      # (T,)


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
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every: expected an int >= 1, got {every!r}")
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
                "clip_fraction": float(np.mean(self.clipped))}


def grad_norm_history(history) -> NormHistory:
    """The gradient-norm history of a :class:`rnnlab.train.History` as numpy arrays."""
    if not hasattr(history, "grad_norm") or not history.grad_norm:
        raise ValueError(f"history: expected an rnnlab.train.History with at least one step, "
                         f"got {history!r}")
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
