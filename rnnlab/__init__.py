"""rnnlab: measure, explain and fix vanishing and exploding gradients in recurrent networks.

Submodules, one concern each, from the bottom layer up: ``checks`` (argument checks),
``layout`` (torch's parameter layout), ``cells`` (pure cell equations), ``loop`` (the one loop
over time), ``models`` (RNN/LSTM/GRU with a step-by-step ``unroll``; SequenceModel),
``jacobians``, ``diagnostics``, ``init``, ``clipping``, ``tasks``, ``history`` (the record of a
training run), ``train``, ``plotting``, ``device``, ``notebook`` (page set-up), ``labkit`` (lab
checks) and ``grading`` (instructor tooling).

The names below (``rnnlab.RNN``, ``rnnlab.fit``, ``rnnlab.plotting``, …) and every submodule
(``rnnlab.cells`` after a bare ``import rnnlab``) are imported on first use, so ``import rnnlab``
alone does not import torch: the command line and the grader, which import ``rnnlab.grading``,
start without it.
"""

from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"

_SUBMODULES = ("clipping", "diagnostics", "init", "jacobians", "plotting", "tasks", "train")
_WHERE = {
    "RNN": "models", "LSTM": "models", "GRU": "models", "SequenceModel": "models",
    "AdaptiveClipper": "clipping", "clip_grad_norm_": "clipping",
    "clip_grad_value_": "clipping", "History": "history", "fit": "train",
    "make_model": "train", "default_device": "device",
}

__all__ = [
    "RNN", "LSTM", "GRU",
    "AdaptiveClipper", "clip_grad_norm_", "clip_grad_value_",
    "History", "SequenceModel", "fit", "make_model",
    "default_device",
    *_SUBMODULES,
    "__version__",
]


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"rnnlab.{_WHERE[name]}"), name)
    elif name in _SUBMODULES or (not name.startswith("_")
                                 and importlib.util.find_spec(f"rnnlab.{name}") is not None):
        value = importlib.import_module(f"rnnlab.{name}")     # any submodule: rnnlab.cells, …
    else:
        raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
