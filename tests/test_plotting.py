"""rnnlab.plotting: labels with units, plotted data equal to the inputs, no warnings."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rnnlab.plotting import (  # noqa: E402
    plot_hidden_grad_norms,
    plot_log_norm_vs_lag,
    plot_loss_curves,
    plot_loss_slice,
    plot_norm_history,
)
from rnnlab.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def line(ax, label):
    matches = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(matches) == 1, [ln.get_label() for ln in ax.get_lines()]
    return matches[0]


def drawn_without_warnings(fig) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.canvas.draw()
    return True


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_log_norm_vs_lag_reverses_time_into_lag():
    values = {"tanh": np.array([-3.0, -2.0, -1.0, 0.0]), "relu": torch.tensor([1.0, 0.5, 0.2, 0.0])}
    fig, ax = plot_log_norm_vs_lag(values)
    for label, v in values.items():
        x, y = line(ax, label).get_data()
        assert np.array_equal(x, [0, 1, 2, 3])
        assert np.allclose(y, np.asarray(v)[::-1])
    assert "lag" in ax.get_xlabel() and "(steps)" in ax.get_xlabel()
    assert "ln" in ax.get_ylabel() and "(nats)" in ax.get_ylabel()
    assert legend_texts(ax) == ["tanh", "relu"]
    assert drawn_without_warnings(fig)


def test_log_norm_vs_lag_averages_batch_and_converts_to_decades():
    batch = np.array([[0.0, -2.0], [0.0, 0.0]]) * math.log(10)     # (T+1, B)
    fig, ax = plot_log_norm_vs_lag(batch, log10=True)
    _, y = ax.get_lines()[0].get_data()
    assert np.allclose(y, [0.0, -1.0])
    assert "log_{10}" in ax.get_ylabel() and "decades" in ax.get_ylabel()
    assert ax.get_legend() is None
    assert drawn_without_warnings(fig)


def test_hidden_grad_norms_plot_uses_steps_from_one_and_log_scale():
    norms = torch.tensor([1e-6, 1e-3, 1.0])
    fig, ax = plot_hidden_grad_norms({"init": norms})
    x, y = line(ax, "init").get_data()
    assert np.array_equal(x, [1, 2, 3]) and np.allclose(y, norms.numpy())
    assert ax.get_yscale() == "log" and "log scale" in ax.get_ylabel()
    assert "time step" in ax.get_xlabel()
    assert drawn_without_warnings(fig)


def test_loss_curves_accept_histories_and_draw_dashed_baseline():
    history = History(loss=[0.3, 0.2, 0.1])
    fig, ax = plot_loss_curves({"lstm": history, "rnn": [0.2, 0.19, 0.18]}, baseline=1 / 6,
                               ylabel="MSE")
    assert np.allclose(line(ax, "lstm").get_ydata(), history.loss)
    assert np.array_equal(line(ax, "lstm").get_xdata(), [1, 2, 3])
    assert np.allclose(line(ax, "rnn").get_ydata(), [0.2, 0.19, 0.18])
    base = line(ax, "baseline (input ignored)")
    assert base.get_linestyle() == "--" and np.allclose(base.get_ydata(), 1 / 6)
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "MSE"
    assert drawn_without_warnings(fig)


def test_plots_draw_on_a_given_axes():
    fig, axes = plt.subplots(1, 2)
    got_fig, got_ax = plot_loss_curves([1.0, 0.5], ax=axes[1], logy=True)
    assert got_fig is fig and got_ax is axes[1] and axes[1].get_yscale() == "log"
    assert not axes[0].get_lines()


def test_norm_history_from_history_marks_clipped_steps_and_threshold():
    history = History(loss=[1.0] * 4, grad_norm=[0.5, 3.0, 0.8, 5.0],
                      clipped=[False, True, False, True], threshold=[1.0] * 4)
    fig, ax = plot_norm_history(history)
    assert np.allclose(line(ax, "gradient norm").get_ydata(), history.grad_norm)
    threshold = line(ax, "clip threshold")
    assert np.allclose(threshold.get_ydata(), 1.0) and threshold.get_linestyle() == "--"
    marks = line(ax, "clipped step")
    assert np.array_equal(marks.get_xdata(), [2, 4]) and np.allclose(marks.get_ydata(), [3, 5])
    assert ax.get_yscale() == "log" and "before clipping" in ax.get_ylabel()
    assert drawn_without_warnings(fig)


def test_norm_history_without_clipping_has_no_threshold_line():
    history = History(loss=[1.0] * 3, grad_norm=[1.0, 2.0, 3.0], clipped=[False] * 3,
                      threshold=[math.nan] * 3)
    fig, ax = plot_norm_history(history)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "clip threshold" not in labels
    assert np.array_equal(line(ax, "clipped step").get_xdata(), [])


def test_norm_history_with_scalar_and_adaptive_thresholds():
    _, ax = plot_norm_history([1.0, 2.0, 4.0], threshold=2.5)
    assert np.allclose(line(ax, "clip threshold").get_ydata(), 2.5)
    _, ax = plot_norm_history([1.0, 2.0, 4.0], threshold=[1.5, 2.0, 3.0], logy=False)
    assert np.allclose(line(ax, "clip threshold").get_ydata(), [1.5, 2.0, 3.0])
    assert ax.get_yscale() == "linear"
    with pytest.raises(ValueError, match="clipped"):
        plot_norm_history([1.0, 2.0], clipped=[True])


def test_loss_slice_plot_marks_origin():
    alphas = np.linspace(-1, 1, 5)
    losses = alphas ** 2
    fig, ax = plot_loss_slice(alphas, {"gradient": losses})
    x, y = line(ax, "gradient").get_data()
    assert np.allclose(x, alphas) and np.allclose(y, losses)
    assert any(np.allclose(ln.get_xdata(), 0.0) for ln in ax.get_lines()
               if ln.get_label() != "gradient")
    assert "alpha" in ax.get_xlabel() and "L(" in ax.get_ylabel()
    assert drawn_without_warnings(fig)
    with pytest.raises(ValueError, match="losses"):
        plot_loss_slice(alphas, losses[:-1])


@pytest.mark.parametrize("call", [
    lambda: plot_loss_curves({}),
    lambda: plot_hidden_grad_norms([]),
    lambda: plot_log_norm_vs_lag(3.0),
])
def test_empty_input_is_rejected(call):
    with pytest.raises(ValueError):
        call()


def test_non_axes_is_rejected():
    with pytest.raises(TypeError, match="ax: expected a matplotlib Axes or None, got str"):
        plot_loss_curves([1.0], ax="left")


def test_a_flag_that_is_not_a_bool_is_a_type_error():
    with pytest.raises(TypeError, match="^logy: expected a bool, got str$"):
        plot_loss_curves([1.0], logy="yes")
    with pytest.raises(TypeError, match="^log10: expected a bool, got int$"):
        plot_log_norm_vs_lag([0.0, 1.0], log10=1)
