"""rnnlab: measure, explain and fix vanishing and exploding gradients in recurrent networks.

Submodules, one concern each: ``cells`` (pure cell equations), ``models`` (RNN/LSTM/GRU with a
step-by-step ``unroll``), ``init``, ``clipping``, ``jacobians``, ``diagnostics``, ``tasks``,
``train``, ``plotting``, ``device``, ``notebook`` (page set-up), ``labkit`` (lab checks) and
``grading`` (instructor tooling).
"""

from rnnlab import clipping, diagnostics, init, jacobians, plotting, tasks, train
from rnnlab.clipping import AdaptiveClipper, clip_grad_norm_, clip_grad_value_
from rnnlab.device import default_device
from rnnlab.models import GRU, LSTM, RNN
from rnnlab.train import History, SequenceModel, fit, make_model

__version__ = "0.1.0"

__all__ = [
    "RNN", "LSTM", "GRU",
    "AdaptiveClipper", "clip_grad_norm_", "clip_grad_value_",
    "History", "SequenceModel", "fit", "make_model",
    "default_device",
    "clipping", "diagnostics", "init", "jacobians", "plotting", "tasks", "train",
    "__version__",
]
