"""``rnnlab grade``: grade ``SUBMISSIONS/<student>/<lab>.ipynb`` against ``SOURCE/<lab>.ipynb``.

Every student (:func:`rnnlab.grading.submissions.students`) is graded on every lab of SOURCE; a
lab the student did not submit scores 0 with the flag ``not_submitted``. Students are graded
independently — each in a kernel and sandbox of their own, reused for their labs in turn
(:func:`rnnlab.grading.runner.grade_student`) — by ``jobs`` worker processes, each with one
checker process for the tests and, where bwrap and its seccomp filter work, one kernel template
that forks the students' kernels (:mod:`rnnlab.grading.template`); results do not depend on
``jobs``, on the template or on the order in which workers finish. Whatever goes wrong with one
student's grading is that student's flag.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rnnlab.grading.checker import Checker, SourceError
from rnnlab.grading.labs import lab_paths
from rnnlab.grading.limits import Limits
from rnnlab.grading.notebook import LabNotebook, parse_lab, read_notebook
from rnnlab.grading.results import NotebookResult, TestResult
from rnnlab.grading.runner import GRADER_FAILED, grade_student
from rnnlab.grading.sandbox import support
from rnnlab.grading.submissions import students
from rnnlab.grading.template import KernelTemplate
from rnnlab.grading.template import available as template_available

__all__ = ["grade", "grade_group", "parse_memory", "SandboxUnavailable", "tasks", "by_student",
           "MIN_KERNEL_MEMORY"]

MIN_KERNEL_MEMORY = 3 * 2**29
"""1.5 GiB: below it an honest student's kernel cannot start a lab. Measured on the fixture lab in
the sandbox: with 1 GiB the kernel died importing torch and matplotlib (every test 0,
``kernel_died``), with 1.25 GiB it passed; 1.5 GiB keeps a margin."""

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class SandboxUnavailable(RuntimeError):
    """bwrap (or its seccomp filter) is missing or unusable and the caller required it."""


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


def tasks(submissions: str | Path, source: str | Path) -> list[tuple[str, str, str]]:
    """``(student, lab path, student folder)`` for every student × lab, sorted."""
    names = students(submissions)
    labs = lab_paths(source)
    if not labs:
        raise ValueError(f"source: expected solution notebooks (*.ipynb) in {source}, found none")
    return [(name, str(lab), str(Path(submissions) / name)) for name in names for lab in labs]


def by_student(todo: list[tuple[str, str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Group :func:`tasks` by student: ``(student, [(lab path, folder), …])``."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for student, lab, folder in todo:
        groups.setdefault(student, []).append((lab, folder))
    return list(groups.items())


_SLOT = 0                           # this worker's index, for CPU pinning
_CHECKER: Checker | None = None     # this worker's checker process, shared by its students
_TEMPLATE: KernelTemplate | None = None     # this worker's kernel template, likewise
_FOR: tuple[str, str | None] | None = None  # the limits and tmp_root they were made for


def _cpus(threads: int) -> list[int]:
    available = sorted(os.sched_getaffinity(0))
    return [available[(_SLOT * threads + k) % len(available)] for k in range(threads)]


def _grade_student(group, limits: Limits, isolated: bool, tmp_root: str | None,
                   pin: bool = True, template: bool = True) -> list[NotebookResult]:
    global _CHECKER, _TEMPLATE, _FOR
    if _FOR != (repr(limits), tmp_root):
        _close_worker()            # a cluster's worker, given another run's limits
        _FOR = (repr(limits), tmp_root)
    if _CHECKER is None:
        _CHECKER = Checker(limits)
        atexit.register(_close_worker)
    cpus = _cpus(1) if pin else None
    if template and isolated and _TEMPLATE is None and template_available():
        _TEMPLATE = KernelTemplate(limits, cpus=cpus, tmp_root=tmp_root)
    student, labs = group
    return grade_student([(_lab(lab), folder) for lab, folder in labs], student, limits,
                         isolated, cpus=cpus, tmp_root=tmp_root, checker=_CHECKER,
                         template=_TEMPLATE if template and isolated else None)


def _close_worker() -> None:
    """Close this process's checker and kernel template (the run is over)."""
    global _CHECKER, _TEMPLATE
    for helper in (_CHECKER, _TEMPLATE):
        if helper is not None:
            helper.close()
    _CHECKER = _TEMPLATE = None


def _isolated(sandbox: str) -> bool:
    """Whether kernels run under bwrap here, for ``sandbox`` (see :func:`grade`).

    Raises:
        SandboxUnavailable: ``sandbox="require"`` and bwrap or seccomp does not work here.
    """
    found = support()
    if sandbox == "require" and not (found.bwrap and found.seccomp):
        raise SandboxUnavailable(f"sandbox required, but here: {found.describe()}; install "
                                 "bubblewrap and libseccomp2, or drop --require-sandbox")
    return sandbox != "off" and found.bwrap


def grade_group(group, labs: list[str], limits: Limits, sandbox: str, tmp_root: str | None,
                template: bool = True) -> tuple[list[NotebookResult], bool]:
    """Grade one student of :func:`by_student` in this process, in the sandbox this machine
    offers (a task of a cluster's worker); ``(results, isolated)``. ``labs`` are every lab's
    path, checked first as :func:`grade` does."""
    isolated = _isolated(sandbox)
    os.environ["RNNLAB_DEVICE"] = "cpu"
    for lab in labs:
        _lab(lab)
    return _grade_student(group, limits, isolated, tmp_root, pin=False,
                          template=template), isolated


def _worker_init(counter) -> None:
    global _SLOT
    os.environ["RNNLAB_DEVICE"] = "cpu"
    with counter.get_lock():
        _SLOT = counter.value
        counter.value += 1
    import torch

    torch.set_num_threads(1)


def _failed(group, labs: list[str], reason: str) -> list[NotebookResult]:
    student, _ = group
    out = []
    for path in labs:
        lab = _lab(path)
        out.append(NotebookResult(student, lab.name, {"error"}, [
            TestResult(c.grade_id, 0.0, c.points, (), f"{GRADER_FAILED} ({reason})")
            for c in lab.tests]))
    return out


def grade(submissions: str | Path, source: str | Path, *, limits: Limits | None = None,
          jobs: int = 1, sandbox: str = "auto", progress: Callable | None = None,
          tmp_root: str | Path | None = None, scheduler: str | None = None,
          template: bool = True) -> tuple[list[NotebookResult], bool]:
    """Grade every submission; returns the results (sorted) and whether bwrap was used (on a
    cluster: by every worker that graded a student).

    Args:
        submissions: the directory ``SUBMISSIONS/<student>/<lab>.ipynb``.
        source: the directory of instructor solution notebooks.
        limits: time and memory limits (defaults: 60 s per cell, 600 s per notebook, 4 GiB).
        jobs: number of students graded in parallel (worker processes).
        sandbox: ``"auto"`` (bwrap when it works), ``"require"`` (error without bwrap and its
            seccomp filter) or ``"off"`` (never; student code runs as the grader's user).
        progress: called with the number of students once, then with ``None`` after each.
        tmp_root: where the sandboxes' private directories go (default: the system's).
        scheduler: a Dask scheduler's address or scheduler file: each student is one task on
            that cluster (:mod:`rnnlab.grading.cluster`; ``jobs`` is then unused), graded in
            the sandbox of the worker's machine; the submissions, the source and ``tmp_root``
            must be at the same paths there.
        template: fork the kernels of each worker from a kernel template that has imported
            torch (:mod:`rnnlab.grading.template`; only where bwrap and its seccomp filter
            work); ``False`` starts each kernel in a fresh sandbox (4 CPU seconds more per
            student).

    Raises:
        SandboxUnavailable: ``sandbox="require"`` and bwrap or seccomp does not work here.
    """
    if sandbox not in ("auto", "require", "off"):
        raise ValueError(f"sandbox: expected 'auto', 'require' or 'off', got {sandbox!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected a positive int, got {jobs!r}")
    limits = limits or Limits()
    if limits.memory < MIN_KERNEL_MEMORY:
        raise ValueError(f"memory: expected at least {MIN_KERNEL_MEMORY / 2**30:g}G (a student's "
                         f"kernel imports torch; honest students would score 0), got "
                         f"{limits.memory / 2**20:g}M")
    isolated = _isolated(sandbox) if scheduler is None else True    # a cluster: its workers'
    todo = tasks(submissions, source)
    labs = sorted({lab for _, lab, _ in todo})
    for lab in labs:
        _lab(lab)                                   # a bad source fails before any grading
    root = None if tmp_root is None else str(tmp_root)
    groups = by_student(todo)
    if progress:
        progress(len(groups))
    results: list[NotebookResult] = []

    def done(graded: list[NotebookResult]) -> None:
        results.extend(graded)
        if progress:
            progress(None)

    if scheduler is not None:
        from rnnlab.grading.cluster import grade_on_cluster

        everywhere = True
        for graded, remote in grade_on_cluster(
                scheduler, groups, labs, limits, sandbox, root, template,
                lambda group, reason: _failed(group, [lab for lab, _ in group[1]], reason)):
            done(graded)
            everywhere = everywhere and remote is not False
        return sorted(results, key=lambda r: (r.student, r.lab)), everywhere
    if jobs == 1:
        try:
            for group in groups:
                done(_grade_student(group, limits, isolated, root, template=template))
        finally:
            _close_worker()
    else:
        context = multiprocessing.get_context("spawn")
        counter = context.Value("i", 0)
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                 initargs=(counter,)) as pool:
            futures = {pool.submit(_grade_student, group, limits, isolated, root,
                                   template=template): group for group in groups}
            for future in as_completed(futures):
                try:
                    done(future.result())
                except SourceError:
                    raise
                except Exception as exc:     # a worker died: that student, not the run
                    done(_failed(futures[future], [lab for lab, _ in futures[future][1]],
                                 type(exc).__name__))
    return sorted(results, key=lambda r: (r.student, r.lab)), isolated
