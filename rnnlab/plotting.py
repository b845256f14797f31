r"""The figures the book repeats, with labelled axes and units.

Every function draws on ``ax`` (a new figure when None) and returns ``(fig, ax)``; curves are
given as one array or as a mapping ``{label: values}`` (a legend is drawn when labelled).

* :func:`plot_log_norm_vs_lag` — :math:`\ln\lVert\partial s_T/\partial s_t\rVert` against the lag
  :math:`T - t` (straight lines: the slope is the rate of vanishing or exploding);
* :func:`plot_hidden_grad_norms` — :math:`\lVert\partial L/\partial h_t\rVert` against t;
* :func:`plot_loss_curves` — training loss with the input-ignoring baseline dashed;
* :func:`plot_norm_history` — gradient norm per training step with the clip threshold;
* :func:`plot_loss_slice` — :math:`L(\theta + \alpha d)` against α.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from rnnlab.checks import check_bool
from rnnlab.history import History

__all__ = ["plot_log_norm_vs_lag", "plot_hidden_grad_norms", "plot_loss_curves",
           "plot_norm_history", "plot_loss_slice", "figure_and_axes"]

_BASELINE_STYLE = {"color": "0.4", "linestyle": "--", "linewidth": 1.2}


def figure_and_axes(ax) -> tuple:
    """``(ax.figure, ax)`` for a matplotlib Axes, or a new figure's ``(fig, ax)`` when None."""
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        return fig, ax
    if not hasattr(ax, "plot") or not hasattr(ax, "figure"):
        raise TypeError(f"ax: expected a matplotlib Axes or None, got {type(ax).__name__}")
    return ax.figure, ax


def _as_array(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=float)
    if array.ndim == 0 or array.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D (or 2-D) sequence of numbers, "
                         f"got shape {array.shape}")
    return array


def _curves(curves, name: str, unwrap=None) -> dict[str | None, np.ndarray]:
    """``{label: array}`` (``unwrap(values)`` as an array); a single curve gets the label None."""
    if isinstance(curves, Mapping):
        if not curves:
            raise ValueError(f"{name}: expected at least one curve, got an empty mapping")
        labelled = {str(label): values for label, values in curves.items()}
    else:
        labelled = {None: curves}
    return {label: _as_array(unwrap(values) if unwrap else values, name)
            for label, values in labelled.items()}


def _legend(ax, labelled: bool) -> None:
    if labelled:
        ax.legend(frameon=False)


def plot_log_norm_vs_lag(log_norms, *, ax=None, log10: bool = False):
    r"""Plot :math:`\ln\lVert\partial s_T/\partial s_t\rVert_2` against the lag :math:`k = T - t`.

    ``log_norms``: the output of :func:`rnnlab.jacobians.jacobian_log_norms`, indexed by
    t = 0..T — shape (T+1,), or (T+1, B) whose batch mean (the log of the geometric mean) is
    drawn — or a mapping ``{label: that}``. The curve drawn is ``values[::-1]`` at k = 0..T.
    ``log10=True`` divides by ln 10 (decades instead of nats).
    """
    check_bool("log10", log10)
    fig, ax = figure_and_axes(ax)
    curves = _curves(log_norms, "log_norms")
    for label, array in curves.items():
        if array.ndim == 2:
            array = array.mean(axis=1)
        y = array[::-1] / (math.log(10) if log10 else 1.0)
        ax.plot(np.arange(len(y)), y, label=label)
    unit = r"$\log_{10}$" if log10 else r"$\ln$"
    ax.set_xlabel(r"lag $T - t$ (steps)")
    ax.set_ylabel(unit + r" $\Vert\partial s_T/\partial s_t\Vert_2$"
                  + (" (decades)" if log10 else " (nats)"))
    _legend(ax, None not in curves)
    return fig, ax


def plot_hidden_grad_norms(norms, *, ax=None, logy: bool = True):
    r"""Plot :math:`\lVert\partial L/\partial h_t\rVert` against t = 1..T (log scale by default).

    ``norms``: (T,) from :func:`rnnlab.diagnostics.hidden_grad_norms`, or ``{label: (T,)}``.
    """
    check_bool("logy", logy)
    fig, ax = figure_and_axes(ax)
    curves = _curves(norms, "norms")
    for label, y in curves.items():
        ax.plot(np.arange(1, len(y) + 1), y, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(r"time step $t$")
    ax.set_ylabel(r"$\Vert\partial L/\partial h_t\Vert_2$" + (" (log scale)" if logy else ""))
    _legend(ax, None not in curves)
    return fig, ax


def plot_loss_curves(losses, *, baseline: float | None = None, ax=None, logy: bool = False,
                     ylabel: str = "training loss"):
    """Plot the loss per training step, with ``baseline`` as a dashed horizontal line.

    ``losses``: a :class:`rnnlab.History` (its ``loss``), a sequence, or a mapping
    ``{label: either}``. ``baseline`` is typically ``task.baseline_loss`` (what a model that
    ignores the input achieves).
    """
    check_bool("logy", logy)
    fig, ax = figure_and_axes(ax)
    curves = _curves(losses, "losses", lambda v: v.loss if isinstance(v, History) else v)
    for label, y in curves.items():
        ax.plot(np.arange(1, len(y) + 1), y, label=label)
    if baseline is not None:
        ax.axhline(float(baseline), label="baseline (input ignored)", **_BASELINE_STYLE)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel + (" (log scale)" if logy else ""))
    _legend(ax, None not in curves or baseline is not None)
    return fig, ax


def plot_norm_history(norms, *, threshold=None, clipped=None, ax=None, logy: bool = True):
    r"""Plot the gradient norm :math:`\lVert\nabla_\theta L\rVert_2` (before clipping) per step.

    ``norms``: a :class:`rnnlab.History` (then ``threshold`` and ``clipped`` default to its
    records) or a sequence. ``threshold``: a number (dashed horizontal line) or one value per
    step (an adaptive clipper's threshold, dashed curve). ``clipped``: booleans per step; the
    clipped steps are marked with crosses.
    """
    check_bool("logy", logy)
    fig, ax = figure_and_axes(ax)
    if isinstance(norms, History):
        history = norms
        norms = history.grad_norm
        if threshold is None and any(not math.isnan(v) for v in history.threshold):
            threshold = history.threshold
        if clipped is None:
            clipped = history.clipped
    y = _as_array(norms, "norms")
    steps = np.arange(1, len(y) + 1)
    ax.plot(steps, y, label="gradient norm", linewidth=1.0)
    if threshold is not None:
        limit = _as_array(threshold, "threshold") if np.ndim(threshold) else float(threshold)
        if np.ndim(limit) == 0:
            ax.axhline(limit, label="clip threshold", **_BASELINE_STYLE)
        else:
            ax.plot(steps, limit, label="clip threshold", **_BASELINE_STYLE)
    if clipped is not None:
        mask = np.asarray(clipped, dtype=bool)
        if mask.shape != y.shape:
            raise ValueError(f"clipped: expected {len(y)} booleans, got shape {mask.shape}")
        ax.plot(steps[mask], y[mask], "x", color="C3", markersize=4, label="clipped step")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(r"$\Vert\nabla_\theta L\Vert_2$ before clipping"
                  + (" (log scale)" if logy else ""))
    _legend(ax, threshold is not None or clipped is not None)
    return fig, ax


def plot_loss_slice(alphas, losses, *, ax=None, logy: bool = False,
                    xlabel: str = r"step length $\alpha$ along $d$"):
    r"""Plot a 1-D slice :math:`L(\theta + \alpha d)` against α, with α = 0 marked.

    ``losses``: the output of :func:`rnnlab.diagnostics.loss_slice`, or ``{label: that}``, one
    value per α.
    """
    check_bool("logy", logy)
    fig, ax = figure_and_axes(ax)
    x = _as_array(alphas, "alphas")
    curves = _curves(losses, "losses")
    for label, y in curves.items():
        if y.shape != x.shape:
            raise ValueError(f"losses: expected one value per alpha ({len(x)}), "
                             f"got shape {y.shape}")
        ax.plot(x, y, label=label)
    ax.axvline(0.0, color="0.6", linestyle=":", linewidth=1.0)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"loss $L(\theta + \alpha d)$" + (" (log scale)" if logy else ""))
    _legend(ax, None not in curves)
    return fig, ax
