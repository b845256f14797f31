"""Where tensors live: one switch for every page and lab.

Every chapter and lab calls :func:`default_device` and puts its tensors there, so the same
notebook runs unchanged on the CPU kernel (``python3``) and on the GPU kernel (``rnnlab-cuda``,
which sets ``RNNLAB_DEVICE=cuda``).
"""

from __future__ import annotations

import os

import torch

__all__ = ["default_device"]

_CHOICES = ("cpu", "cuda")


def default_device() -> torch.device:
    """Return the device the course computes on.

    Order of precedence:

    1. the environment variable ``RNNLAB_DEVICE`` (``"cpu"`` or ``"cuda"``, optionally with an
       index such as ``"cuda:1"``), if set and not empty;
    2. ``cuda`` when :func:`torch.cuda.is_available`;
    3. ``cpu``.

    Raises:
        ValueError: ``RNNLAB_DEVICE`` names something other than ``cpu``/``cuda``.
        RuntimeError: ``RNNLAB_DEVICE`` asks for ``cuda`` but no CUDA device is available.
    """
    requested = os.environ.get("RNNLAB_DEVICE", "").strip()
    if requested:
        kind = requested.split(":", 1)[0].lower()
        if kind not in _CHOICES:
            raise ValueError(
                f"RNNLAB_DEVICE: expected one of {_CHOICES} (optionally 'cuda:N'), "
                f"got {requested!r}"
            )
        if kind == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"RNNLAB_DEVICE={requested!r} asks for a GPU, but torch.cuda.is_available() is "
                "False on this machine; unset it or set RNNLAB_DEVICE=cpu"
            )
        return torch.device(requested.lower())
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
