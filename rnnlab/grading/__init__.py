"""Instructor tooling: release student labs from solutions, grade submissions (DESIGN.md §5).

* :func:`release` — ``solutions/*.ipynb`` → ``labs/*.ipynb`` (:mod:`rnnlab.grading.release`);
* :func:`grade` — a folder of submissions → results (:mod:`rnnlab.grading.grade`), written by
  :mod:`rnnlab.grading.report` as grades.csv, a summary and per-student feedback.

Submodules are imported on first use: :mod:`rnnlab.grading.remote` is also imported inside
student kernels and must stay light.
"""

from __future__ import annotations

import importlib

__all__ = ["release", "release_notebook", "grade", "Limits"]

_WHERE = {"release": "release", "release_notebook": "release", "grade": "grade",
          "Limits": "session"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"rnnlab.grading.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'rnnlab.grading' has no attribute {name!r}")
