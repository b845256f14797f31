"""rnnlab: measure, explain and fix vanishing and exploding gradients in recurrent networks.

Submodules, one concern each, from the bottom layer up: ``checks`` (argument checks),
``layout`` (torch's parameter layout), ``cells`` (pure cell equations), ``loop`` (the one loop
over time), ``models`` (RNN/LSTM/GRU with a step-by-step ``unroll``; SequenceModel),
``jacobians``, ``diagnostics``, ``init``, ``clipping``, ``tasks``, ``history`` (the record of a
training run), ``train``, ``plotting``, ``device``, ``notebook`` (page set-up), ``labkit`` (lab
checks) and ``grading`` (instructor tooling).
"""

from rnnlab import clipping, diagnostics, init, jacobians, plotting, tasks, train
from rnnlab.clipping import AdaptiveClipper, clip_grad_norm_, clip_grad_value_
from rnnlab.device import default_device
from rnnlab.history import History
from rnnlab.models import GRU, LSTM, RNN, SequenceModel
from rnnlab.train import fit, make_model

__version__ = "0.1.0"

__all__ = [
    "RNN", "LSTM", "GRU",
    "AdaptiveClipper", "clip_grad_norm_", "clip_grad_value_",
    "History", "SequenceModel", "fit", "make_model",
    "default_device",
    "clipping", "diagnostics", "init", "jacobians", "plotting", "tasks", "train",
    "__version__",
]
