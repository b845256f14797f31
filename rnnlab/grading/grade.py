"""``rnnlab grade``: grade ``SUBMISSIONS/<student>/<lab>.ipynb`` against ``SOURCE/<lab>.ipynb``.

Every student (a sub-directory of SUBMISSIONS) is graded on every lab of SOURCE; a lab the
student did not submit scores 0 with the flag ``not_submitted``. Students are graded
independently — each in a kernel and sandbox of their own, reused for their labs in turn
(:func:`rnnlab.grading.runner.grade_student`) — by ``jobs`` worker processes; results do not
depend on ``jobs`` or on the order in which workers finish.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rnnlab.grading.notebook import LabNotebook, parse_lab, read_notebook
from rnnlab.grading.release import lab_paths
from rnnlab.grading.runner import NotebookResult, grade_student
from rnnlab.grading.sandbox import bwrap_available
from rnnlab.grading.session import Limits

__all__ = ["grade", "parse_memory", "SandboxUnavailable", "tasks", "by_student"]

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class SandboxUnavailable(RuntimeError):
    """bwrap is missing or unusable and the caller required a sandbox."""


def parse_memory(text: str | int) -> int:
    """``"4G"``, ``"4GiB"``, ``"512M"`` or a number of bytes → bytes (powers of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _MEMORY.match(str(text))
    if not match:
        raise ValueError(f"memory: expected a size such as 4G, 512M or bytes, got {text!r}")
    scale = 1024 ** " kmgt".index((match.group(2) or " ").lower())
    return int(float(match.group(1)) * scale)


@functools.cache
def _lab(path: str) -> LabNotebook:
    return parse_lab(read_notebook(path), Path(path).stem)


def tasks(submissions: str | Path, source: str | Path) -> list[tuple[str, str, str | None]]:
    """``(student, lab path, submission path or None)`` for every student × lab, sorted."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise ValueError(f"submissions: expected a directory of student folders, got "
                         f"{submissions}")
    labs = lab_paths(source)
    if not labs:
        raise ValueError(f"source: expected solution notebooks (*.ipynb) in {source}, found none")
    students = sorted(p for p in submissions.iterdir()
                      if p.is_dir() and not p.name.startswith("."))
    out = []
    for student in students:
        for lab in labs:
            submitted = student / lab.name
            out.append((student.name, str(lab), str(submitted) if submitted.is_file() else None))
    return out


def by_student(todo: list[tuple[str, str, str | None]]
               ) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Group :func:`tasks` by student: ``(student, [(lab path, submission or None), …])``."""
    groups: dict[str, list[tuple[str, str | None]]] = {}
    for student, lab, submission in todo:
        groups.setdefault(student, []).append((lab, submission))
    return list(groups.items())


def _grade_student(group, limits: Limits, isolated: bool) -> list[NotebookResult]:
    student, labs = group
    return grade_student([(_lab(lab), submission) for lab, submission in labs], student,
                         limits, isolated)


def _worker_init() -> None:
    os.environ["RNNLAB_DEVICE"] = "cpu"
    import torch

    torch.set_num_threads(1)


def grade(submissions: str | Path, source: str | Path, *, limits: Limits | None = None,
          jobs: int = 1, sandbox: str = "auto", progress: Callable | None = None
          ) -> tuple[list[NotebookResult], bool]:
    """Grade every submission; returns the results (sorted) and whether bwrap was used.

    Args:
        submissions: the directory ``SUBMISSIONS/<student>/<lab>.ipynb``.
        source: the directory of instructor solution notebooks.
        limits: time and memory limits (defaults: 60 s per cell, 600 s per notebook, 4 GiB).
        jobs: number of students graded in parallel (worker processes).
        sandbox: ``"auto"`` (bwrap when it works), ``"require"`` (error without it) or
            ``"off"`` (never; student code runs as the grader's user).
        progress: called with the number of notebooks once, then with ``None`` after each
            (a student's notebooks are reported together, when the student is done).

    Raises:
        SandboxUnavailable: ``sandbox="require"`` and bwrap does not work here.
    """
    if sandbox not in ("auto", "require", "off"):
        raise ValueError(f"sandbox: expected 'auto', 'require' or 'off', got {sandbox!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected a positive int, got {jobs!r}")
    limits = limits or Limits()
    isolated = sandbox != "off" and bwrap_available()
    if sandbox == "require" and not isolated:
        raise SandboxUnavailable("bwrap (Debian/Ubuntu package 'bubblewrap') is missing or "
                                 "cannot create namespaces here; install it or drop "
                                 "--require-sandbox")
    todo = tasks(submissions, source)
    for lab in {lab for _, lab, _ in todo}:
        _lab(lab)                                   # a bad source fails before any grading
    if progress:
        progress(len(todo))
    results: list[NotebookResult] = []

    def done(graded: list[NotebookResult]) -> None:
        results.extend(graded)
        for _ in graded if progress else ():
            progress(None)

    if jobs == 1:
        for group in by_student(todo):
            done(_grade_student(group, limits, isolated))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init) as pool:
            futures = [pool.submit(_grade_student, group, limits, isolated)
                       for group in by_student(todo)]
            for future in as_completed(futures):
                done(future.result())
    return sorted(results, key=lambda r: (r.student, r.lab)), isolated
