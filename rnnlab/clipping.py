r"""Gradient clipping: by global norm, by value, and with a threshold adapted to the history.

Exploding gradients make the loss surface of an RNN a landscape of "cliffs": one step along a
huge gradient throws the parameters far away. Pascanu, Mikolov & Bengio (2013)
[``pascanu2013difficulty``] rescale the gradient whenever its norm exceeds a threshold ``c``:

.. math::
    g \leftarrow g \cdot \min\!\left(1, \frac{c}{\lVert g\rVert}\right)

which keeps the direction of ``g`` and bounds the step length by ``lr·c``. Here ``g`` is the
gradient of *all* parameters viewed as one vector, so
:math:`\lVert g\rVert_p = \lVert(\lVert g_1\rVert_p, \dots, \lVert g_m\rVert_p)\rVert_p` over the
``m`` parameter tensors. :func:`clip_grad_norm_` and :func:`clip_grad_value_` give the same
results as :func:`torch.nn.utils.clip_grad_norm_` / :func:`torch.nn.utils.clip_grad_value_`
(torch's formula has ``‖g‖ + 10⁻⁶`` in the denominator, and so does this one);
:class:`AdaptiveClipper` chooses ``c`` from the norms seen so far.
"""

from __future__ import annotations

import math
import types
import warnings
from collections import deque
from collections.abc import Iterable

import torch
from torch import Tensor

from rnnlab.checks import check_bool, check_int, check_number

__all__ = ["clip_grad_norm_", "clip_grad_value_", "grad_norm", "clip_coefficient",
           "AdaptiveClipper"]

_EPS = 1e-6      # torch's guard against ‖g‖ = 0 in c / (‖g‖ + eps)


# --------------------------------------------------------------------------------------------
# Arguments peculiar to clipping: the parameters and the order of the norm
# --------------------------------------------------------------------------------------------

def _as_list(parameters) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    if not isinstance(parameters, Iterable):
        raise TypeError(f"parameters: expected a Tensor or an iterable of Tensors, "
                        f"got {type(parameters).__name__}")
    is_generator = isinstance(parameters, types.GeneratorType)
    parameters = list(parameters)
    for p in parameters:
        if not isinstance(p, Tensor):
            raise TypeError(f"parameters: expected a Tensor or an iterable of Tensors, "
                            f"got an element of type {type(p).__name__}")
    if is_generator and not parameters:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.",
                      stacklevel=3)
    return parameters


def _check_norm_type(norm_type) -> float:
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, str)):
        raise TypeError(f"norm_type: expected a number >= 1 or 'inf', "
                        f"got {type(norm_type).__name__}")
    try:
        p = float(norm_type)
    except ValueError:
        p = math.nan
    if not p >= 1:
        raise ValueError(f"norm_type: expected a number >= 1 or 'inf', got {norm_type!r}")
    return p


# --------------------------------------------------------------------------------------------
# The two halves of norm clipping
# --------------------------------------------------------------------------------------------

def _total_norm(grads: list[Tensor], norm_type: float, error_if_nonfinite: bool) -> Tensor:
    r""":math:`\lVert(\lVert g_1\rVert_p, \dots, \lVert g_m\rVert_p)\rVert_p`, a 0-d tensor on the
    device of the first gradient (``tensor(0.)`` when there is none)."""
    if not grads:
        return torch.tensor(0.0)
    device = grads[0].device
    norms = [torch.linalg.vector_norm(g, norm_type).to(device) for g in grads]   # m × ()
    total = torch.linalg.vector_norm(torch.stack(norms), norm_type)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           "`parameters` is non-finite, so it cannot be clipped. To disable "
                           "this error and scale the gradients by the non-finite norm anyway, "
                           "set `error_if_nonfinite=False`")
    return total


def clip_coefficient(max_norm: float | Tensor, total_norm: Tensor) -> Tensor:
    r""":math:`\min(1, c / (\lVert g\rVert + 10^{-6}))`, torch's norm-clipping coefficient.

    ``max_norm`` :math:`c` and ``total_norm`` :math:`\lVert g\rVert` broadcast (one per member
    of :class:`rnnlab.ensemble.Ensemble`, say); the ``1e-6`` is torch's guard against
    :math:`\lVert g\rVert = 0`. A tensor, so no host sync is needed to apply it.
    """
    return torch.clamp(max_norm / (total_norm + _EPS), max=1.0)


def _scale_(grads: list[Tensor], max_norm: float, total_norm: Tensor) -> None:
    """g ← g · min(1, c / (‖g‖ + eps)), without a host sync on the comparison."""
    coef = clip_coefficient(max_norm, total_norm)
    for g in grads:
        g.mul_(coef.to(g.device))


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------

def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    r"""Rescale the gradients in place so that their global ``p``-norm is at most ``max_norm``.

    .. math::
        g \leftarrow g \cdot \min\!\left(1, \frac{c}{\lVert g\rVert_p + 10^{-6}}\right),
        \qquad \lVert g\rVert_p = \Big(\sum_i \lVert g_i\rVert_p^p\Big)^{1/p}

    over every parameter ``g_i`` that has a ``.grad`` (``max`` over them for ``p = inf``),
    as in Pascanu et al. (2013) [``pascanu2013difficulty``]. Same results as
    :func:`torch.nn.utils.clip_grad_norm_`.

    Args:
        parameters: a Tensor or an iterable of Tensors; those without ``.grad`` are skipped.
        max_norm: the threshold ``c > 0`` (``inf`` never clips).
        norm_type: ``p >= 1``, or ``float("inf")``/``"inf"`` for the largest absolute entry.
        error_if_nonfinite: raise ``RuntimeError`` if the total norm is nan or inf, instead of
            scaling the gradients by it.

    Returns:
        The total norm *before* clipping, a 0-d tensor (``tensor(0.)`` if no gradient).
    """
    parameters = _as_list(parameters)
    max_norm = check_number("max_norm", max_norm, positive=True, finite=False)
    norm_type = _check_norm_type(norm_type)
    check_bool("error_if_nonfinite", error_if_nonfinite)
    with torch.no_grad():
        grads = [p.grad for p in parameters if p.grad is not None]
        total = _total_norm(grads, norm_type, error_if_nonfinite)
        _scale_(grads, max_norm, total)
    return total


def grad_norm(parameters: Tensor | Iterable[Tensor], norm_type: float = 2.0) -> Tensor:
    r"""The global ``p``-norm :math:`\lVert g\rVert_p` of the gradients, as
    :func:`clip_grad_norm_` measures it, without changing them.

    Args:
        parameters: a Tensor or an iterable of Tensors; those without ``.grad`` are skipped.
        norm_type: ``p >= 1``, or ``float("inf")``/``"inf"``.

    Returns:
        A 0-d tensor (``tensor(0.)`` if no gradient).
    """
    parameters = _as_list(parameters)
    norm_type = _check_norm_type(norm_type)
    with torch.no_grad():
        return _total_norm([p.grad for p in parameters if p.grad is not None], norm_type, False)


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    r"""Clamp every gradient entry in place to ``[-clip_value, clip_value]``.

    .. math::
        g_j \leftarrow \max(-v, \min(v, g_j))

    Unlike norm clipping this changes the *direction* of ``g``. Same results as
    :func:`torch.nn.utils.clip_grad_value_`; parameters without ``.grad`` are skipped.
    """
    parameters = _as_list(parameters)
    clip_value = check_number("clip_value", clip_value, positive=True, finite=False)
    with torch.no_grad():
        for p in parameters:
            if p.grad is not None:
                p.grad.clamp_(min=-clip_value, max=clip_value)


class AdaptiveClipper:
    r"""Norm clipping with a threshold taken from the recent history of gradient norms.

    At call ``k`` the pre-clip norm :math:`n_k = \lVert g\rVert_p` is compared with

    .. math::
        c_k = \text{factor} \cdot P_q\big(\{n_j : k - w \le j < k\}\big),

    the ``q``-th percentile of the (at most ``w = window``) previous finite norms, and
    :math:`g \leftarrow g \cdot \min(1, c_k / (n_k + 10^{-6}))` is applied when
    :math:`n_k > c_k` (Pascanu et al., 2013, with ``c`` chosen as in AutoClip, Seetharaman et al.,
    2020). The percentile interpolates linearly between order statistics, as ``numpy.percentile``:
    with the ``m`` norms sorted :math:`n_{(0)} \le \dots \le n_{(m-1)}`, :math:`h = (m-1)\,q/100`,
    :math:`P_q = n_{(\lfloor h\rfloor)} + (h - \lfloor h\rfloor)(n_{(\lfloor h\rfloor + 1)} -
    n_{(\lfloor h\rfloor)})`.

    While fewer than ``warmup`` norms are recorded, :math:`c_k = \infty` (no clipping): the
    history has to describe the typical norm first. A spike is judged against the norms before it
    (:math:`n_k` joins the history only after the call), and non-finite norms never join it.
    Each call reads the norm back to the host (one device sync per step).

    Args:
        percentile: ``q`` in ``[0, 100]``.
        window: ``w >= 1``, the number of most recent norms kept.
        warmup: ``1 <= warmup <= window`` norms recorded before clipping starts.
        factor: multiplier ``> 0`` of the percentile (``percentile=50, factor=2``: twice the
            running median).
        norm_type, error_if_nonfinite: as in :func:`clip_grad_norm_`.

    Example::

        clipper = AdaptiveClipper(percentile=90, window=200, warmup=20)
        loss.backward()
        total_norm, threshold, clipped = clipper(model.parameters())
        optimizer.step()
    """

    def __init__(self, percentile: float = 90.0, window: int = 100, warmup: int = 10,
                 factor: float = 1.0, norm_type: float = 2.0, error_if_nonfinite: bool = False):
        self.percentile = check_number("percentile", percentile, minimum=0, maximum=100)
        check_int("window", window, 1)
        check_int("warmup", warmup, 1)
        if warmup > window:
            raise ValueError(f"warmup: expected an int in [1, window={window}], got {warmup}")
        self.factor = check_number("factor", factor, positive=True, finite=False)
        self.norm_type = _check_norm_type(norm_type)
        check_bool("error_if_nonfinite", error_if_nonfinite)
        self.window = window
        self.warmup = warmup
        self.error_if_nonfinite = error_if_nonfinite
        self._history: deque[float] = deque(maxlen=window)

    @property
    def history(self) -> tuple[float, ...]:
        """The recorded pre-clip norms, oldest first (at most ``window``)."""
        return tuple(self._history)

    @property
    def threshold(self) -> float:
        """The threshold :math:`c_k` the next call will use (``inf`` during warmup)."""
        if len(self._history) < self.warmup:
            return math.inf
        norms = torch.tensor(self._history, dtype=torch.float64)
        return self.factor * torch.quantile(norms, self.percentile / 100).item()

    def reset(self) -> None:
        """Forget the history (warmup starts again)."""
        self._history.clear()

    def __call__(self, parameters: Tensor | Iterable[Tensor]) -> tuple[Tensor, float, bool]:
        """Clip ``parameters``' gradients in place.

        Returns:
            ``(total_norm, threshold, clipped)``: the pre-clip norm (0-d tensor), the threshold
            :math:`c_k` used (``inf`` during warmup), and whether the gradients were rescaled.
        """
        parameters = _as_list(parameters)
        threshold = self.threshold
        with torch.no_grad():
            grads = [p.grad for p in parameters if p.grad is not None]
            total = _total_norm(grads, self.norm_type, self.error_if_nonfinite)
            norm = total.item()
            clipped = norm > threshold
            if clipped:
                _scale_(grads, threshold, total)
        if math.isfinite(norm):
            self._history.append(norm)
        return total, threshold, clipped

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(percentile={self.percentile:g}, window={self.window}, "
                f"warmup={self.warmup}, factor={self.factor:g}, norm_type={self.norm_type:g})")
