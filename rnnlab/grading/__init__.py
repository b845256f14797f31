"""Instructor tooling: release student labs from solutions, grade submissions, write reports.

The public functions, imported on first use (the command line, ``rnnlab release``,
``rnnlab grade`` and ``rnnlab feedback``, goes through them):

* :func:`release`, :func:`release_notebook` — ``solutions/*.ipynb`` → ``labs/*.ipynb``;
* :func:`grade` — a folder of submissions → results, under :class:`Limits`, in the sandbox whose
  abilities on this machine :func:`support` reports; :func:`parse_memory` reads ``4G``-style
  sizes; :class:`SandboxUnavailable` is raised when a required sandbox is missing;
* :func:`write_grades`, :func:`write_summary`, :func:`write_details`, :func:`read_details`,
  :func:`write_feedback` — grades.csv, the per-student summary, the details JSON and the
  per-student feedback.

How a lab is written and what the grader promises are in the book's instructor guide
(``chapters/instructor_guide.md``); how the package is laid out is in ``CONTRIBUTING.md``.
Submodules are imported lazily: :mod:`rnnlab.grading.remote` and
:mod:`rnnlab.grading.recorder` are also imported inside student kernels and must stay light.
"""

from __future__ import annotations

import importlib
import sys

# nbformat validates with jsonschema, whose format checkers import rfc3987_syntax when it is
# installed (it comes with jsonschema[format-nongpl]); that module builds ~35 Lark parsers at
# import: 3 s of CPU in every grading process (the grader, each worker, each checker), measured
# side by side, against 0.3 s for nbformat without it. No notebook schema uses the IRI formats it
# checks (jsonschema issue 1428), so the grader's processes go without it.
sys.modules.setdefault("rfc3987_syntax", None)

__all__ = ["release", "release_notebook", "grade", "parse_memory", "SandboxUnavailable",
           "Limits", "support", "write_grades", "write_summary", "write_details", "read_details",
           "write_feedback", "hidden_folders"]

_WHERE = {"release": "labs", "release_notebook": "labs", "grade": "batch",
          "parse_memory": "batch", "SandboxUnavailable": "batch", "Limits": "limits",
          "support": "sandbox", "write_grades": "report", "write_summary": "report",
          "write_details": "report", "read_details": "report", "write_feedback": "report",
          "hidden_folders": "submissions"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"rnnlab.grading.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'rnnlab.grading' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
