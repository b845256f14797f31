"""rnnlab: measure, explain and fix vanishing and exploding gradients in recurrent networks.

Submodules, one concern each, from the bottom layer up (CONTRIBUTING.md draws the layers):
``checks`` (argument checks, one rule), ``layout`` (torch's parameter layout), ``history``
(the record of a training run), ``cells`` (pure cell equations), ``loop`` (the one loop over
time), ``models`` (RNN/LSTM/GRU with a step-by-step ``unroll``; SequenceModel), ``bptt``
(backpropagation through time by hand), ``jacobians`` (step Jacobians, their products and
Lyapunov exponents), ``diagnostics`` (dL/dh_t through time), ``init`` (initialisers),
``clipping`` (gradient clipping), ``tasks`` (synthetic tasks), ``cliff`` (the one-unit cliff),
``lru`` (the linear recurrent unit), ``flossing`` (gradient flossing), ``train`` (the fit
loop), ``ensemble`` (many small models trained as one), ``long_range`` (one cell of
chapter 8's long-range comparison), ``plotting`` (the book's figures),
``diagrams`` (the unrolled graph), ``timing`` (side-by-side wall-clock medians), ``device``
(where tensors live), ``kernels`` (the rnnlab-cuda Jupyter kernel), ``notebook`` (page
set-up), ``labkit`` (lab checks), ``cli`` (the ``rnnlab`` command) and ``grading``
(instructor tooling: release and grade labs).

Every public name (``rnnlab.RNN``, ``rnnlab.fit``, …) and every submodule (``rnnlab.cells``,
``rnnlab.lru``) is imported on first access (PEP 562), so ``import rnnlab`` alone does not import
torch: the command line and the grader, which import ``rnnlab.grading``, start without it.
"""

from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"

_WHERE = {
    "RNN": "models", "LSTM": "models", "GRU": "models", "SequenceModel": "models",
    "AdaptiveClipper": "clipping", "clip_grad_norm_": "clipping",
    "clip_grad_value_": "clipping", "History": "history", "fit": "train",
    "make_model": "train", "default_device": "device",
}
_ON_ACCESS = ("checks", "layout", "cells", "loop", "bptt", "cliff", "lru", "flossing",
              "ensemble", "long_range", "diagrams", "timing", "kernels", "notebook", "labkit",
              "cli", "grading")

__all__ = [
    "RNN", "LSTM", "GRU",
    "AdaptiveClipper", "clip_grad_norm_", "clip_grad_value_",
    "History", "SequenceModel", "fit", "make_model",
    "default_device",
    "clipping", "diagnostics", "init", "jacobians", "plotting", "tasks", "train",
    "history", "models", "device", *_ON_ACCESS,
    "__version__",
]


def __getattr__(name: str):
    """Import a public name's module, or a submodule, on first access (PEP 562)."""
    if name in _WHERE:
        value = getattr(importlib.import_module(f"rnnlab.{_WHERE[name]}"), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"rnnlab.{name}") is not None:
        value = importlib.import_module(f"rnnlab.{name}")
    else:
        raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
