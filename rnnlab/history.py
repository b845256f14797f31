"""The record of a training run: what :func:`rnnlab.train.fit` saw at each step.

Kept apart from the fit loop so that the modules that read a run (:mod:`rnnlab.diagnostics`,
:mod:`rnnlab.plotting`) can name its type without depending on the loop that writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["History", "clip_fraction"]


def clip_fraction(clipped: Sequence[bool]) -> float:
    """Fraction of the steps whose gradient was clipped (0 for no step)."""
    return sum(bool(c) for c in clipped) / len(clipped) if len(clipped) else 0.0


@dataclass
class History:
    """What :func:`~rnnlab.train.fit` saw, one entry per optimizer step (``eval_*`` at
    evaluation steps).

    ``grad_norm`` is the total 2-norm of the gradient before clipping; ``threshold`` the clip
    threshold used at that step (NaN without clipping; the per-element bound for ``"value"``);
    ``time`` the wall-clock seconds since the start, after the step. ``stopped`` says why the
    run ended: ``"steps"``, ``"target"`` (held-out loss reached ``target_loss``),
    ``"nonfinite"`` (loss or gradient NaN/inf; that step is recorded but not taken) or
    ``"callback"``.
    """

    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    clipped: list[bool] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    eval_accuracy: list[float | None] = field(default_factory=list)
    baseline_loss: float | None = None
    stopped: str = "steps"

    @property
    def steps(self) -> int:
        """Number of optimizer steps recorded."""
        return len(self.loss)

    @property
    def seconds(self) -> float:
        """Wall-clock seconds of the whole run."""
        return self.time[-1] if self.time else 0.0

    @property
    def clip_fraction(self) -> float:
        """Fraction of the steps whose gradient was clipped."""
        return clip_fraction(self.clipped)
