"""Grade one submitted notebook against its instructor source.

The notebook that is run is *rebuilt* from the instructor's source: every set-up and test cell
is the instructor's, and only the answer cells (matched by ``grade_id``) come from the student.
Walking the cells in order, skipping those tagged ``skip-grading``:

* a set-up cell runs in the grader's namespace *and* in the student's kernel;
* an answer cell runs in the student's kernel only;
* a test cell runs in the grader's process, in a copy of the set-up namespace where each answer
  name it uses is bound to a proxy (:class:`AnswerProxy`): calling it runs the call in the kernel
  and returns plain data (:mod:`remote`). Plain answer values are fetched the same way. So the
  assertions, ``torch.allclose`` and the test code itself are out of the student's reach.

A test scores all its points when it runs to the end, none otherwise. :func:`grade_student`
grades one student's labs one after the other in one kernel, emptied between labs.
"""

from __future__ import annotations

import ast
import io
import random
import time
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnnlab.grading import remote
from rnnlab.grading.notebook import (
    BEGIN_HIDDEN,
    END_HIDDEN,
    LabCell,
    LabNotebook,
    defined_names,
    marker_regions,
    read_notebook,
)
from rnnlab.grading.release import release_source
from rnnlab.grading.session import GradingEvent, KernelSession, Limits, flag_of

__all__ = ["TestResult", "NotebookResult", "AnswerProxy", "grade_notebook", "grade_student",
           "SourceError"]

_UNANSWERED = (AssertionError, NotImplementedError)


class SourceError(RuntimeError):
    """An instructor cell failed in the grader's process: a bug of the lab, not the student's."""


@dataclass(frozen=True)
class TestResult:
    """One graded test: points scored, flags of this test, and feedback safe to show."""

    test: str
    points: float
    max_points: float
    flags: tuple[str, ...] = ()
    message: str = ""


@dataclass
class NotebookResult:
    """All tests of one student's lab, and the flags that concern the whole notebook."""

    student: str
    lab: str
    flags: set[str] = field(default_factory=set)
    tests: list[TestResult] = field(default_factory=list)
    seconds: float = 0.0          # wall-clock time spent grading it


class AnswerProxy:
    """Stands for an answer function in a test: a call runs in the student's kernel.

    Arguments are sent and results received as plain data (:mod:`remote`); the student's
    exceptions come back as the built-in exception of the same name (or ``StudentException``),
    and a timeout, a dead kernel or a non-plain result raise :class:`GradingEvent`.
    """

    def __init__(self, name: str, session: KernelSession, deadline: float, events: list[str]):
        self._name, self._session, self._deadline, self._events = name, session, deadline, events

    def __call__(self, *args, **kwargs):
        request = {"op": "call", "name": self._name, "args": remote.dumps(list(args)),
                   "kwargs": remote.dumps(kwargs)}
        try:
            return self._session.request(request, self._deadline)
        except GradingEvent as event:
            self._events.append(event.flag)
            raise

    def __repr__(self) -> str:
        return f"<answer {self._name} in the student's kernel>"


class _Unanswered:
    """An answer name the student's kernel does not define: any use is 'not implemented'."""

    def __init__(self, name: str):
        self._name = name

    def _missing(self, *args, **kwargs):
        raise NotImplementedError(f"{self._name} is not defined")

    __call__ = __eq__ = __ne__ = __bool__ = __len__ = __iter__ = __float__ = _missing
    __getattr__ = __getitem__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _missing


@contextmanager
def _quiet():
    """Swallow what instructor cells print in the grader (the CSV is the grader's output)."""
    sink = io.StringIO()
    with redirect_stdout(sink), redirect_stderr(sink):
        yield


def _normal(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _names_used(source: str) -> set[str]:
    try:
        return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    except SyntaxError:
        return set()


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failure_lines(exc: BaseException, filename: str) -> list[int]:
    lines, tb = [], exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            lines.append(tb.tb_lineno - 1)
        tb = tb.tb_next
    return lines


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        return "not implemented yet"
    if isinstance(exc, GradingEvent):
        return str(exc)
    if isinstance(exc, AssertionError):
        return _one_line(str(exc)) or "assertion failed"
    return _one_line(f"{type(exc).__name__}: {exc}")


def _run_test(cell: LabCell, setup_ns: dict, answers: set[str], session: KernelSession
              ) -> TestResult:
    filename = f"<test {cell.grade_id}>"
    events: list[str] = []
    failed_checks: list[tuple[str, BaseException]] = []

    @contextmanager
    def check(description: str):
        try:
            yield
        except BaseException as exc:
            failed_checks.append((description, exc))
            raise

    namespace = dict(setup_ns, check=check)
    try:
        used = sorted(_names_used(cell.source) & answers)
        if used and session.ensure().status != "ok":     # a restart does not eat the test's time
            raise GradingEvent(session.broken or "kernel_died", "the kernel is not available")
        deadline = session.cell_deadline()
        described = session.request({"op": "describe", "names": used}, deadline) if used else {}
        for name in used:
            kind = described.get(name, {}).get("kind") if isinstance(described, dict) else None
            if kind == "callable":
                namespace[name] = AnswerProxy(name, session, deadline, events)
            elif kind == "value":
                namespace[name] = described[name]["value"]
            else:
                namespace[name] = _Unanswered(name)
        with _quiet():
            exec(compile(cell.source, filename, "exec"), namespace)
    except BaseException as exc:   # noqa: B036 — a GradingEvent is a BaseException on purpose
        if isinstance(exc, GradingEvent):
            events.append(exc.flag)
        elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        flags = set(events)
        if not flags and not isinstance(exc, _UNANSWERED):
            flags.add("error")
        hidden = marker_regions(cell.source, BEGIN_HIDDEN, END_HIDDEN, filename)
        lines = _failure_lines(exc, filename)
        for number, (first, last) in enumerate(hidden, start=1):
            if any(first <= line <= last for line in lines):
                message = f"hidden test {number} failed"
                break
        else:
            described_check = next((d for d, e in reversed(failed_checks) if e is exc), None)
            message = _describe(exc)
            if described_check is not None:
                message = f"{described_check}: {message}"
        return TestResult(cell.grade_id, 0.0, cell.points, tuple(sorted(flags)), message)
    return TestResult(cell.grade_id, cell.points, cell.points)


def _submitted_cells(path: Path | None, result: NotebookResult) -> dict | None:
    if path is None:
        result.flags.add("not_submitted")
        return None
    try:
        notebook = read_notebook(path)
    except ValueError:
        result.flags.add("unreadable")
        return None
    cells = {}
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if isinstance(grade_id, str) and grade_id not in cells:
            cells[grade_id] = cell
    return cells


def grade_notebook(lab: LabNotebook, student: str, submission: str | Path | None,
                   limits: Limits, isolated: bool, threads: int = 1,
                   session: KernelSession | None = None) -> NotebookResult:
    """Grade one student's notebook of ``lab`` (``submission`` ``None``: not submitted).

    ``session`` is the student's kernel session, shared by their labs (:func:`grade_student`);
    without one, the notebook gets a kernel of its own, closed at the end.

    Raises:
        SourceError: an instructor set-up cell failed in the grader's process.
    """
    start = time.monotonic()
    result = NotebookResult(student, lab.name)
    submitted = _submitted_cells(Path(submission) if submission else None, result)
    if submitted is None:
        result.tests = [TestResult(c.grade_id, 0.0, c.points) for c in lab.tests]
        return result
    answers = {name for c in lab.cells if c.kind == "answer" for name in defined_names(c.source)}
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    setup_ns: dict = {"__name__": "__main__"}
    own = session is None
    if own:
        session = KernelSession(limits, isolated, threads)
    else:
        session.begin_lab()
    try:
        for cell in lab.cells:
            theirs = submitted.get(cell.grade_id)
            released = release_source(cell.source, cell.cell_type)
            if cell.locked and (theirs is None or _normal(theirs.source) != _normal(released)):
                result.flags.add("tampered")
            if cell.skip or cell.kind == "markdown":
                continue
            if cell.kind == "setup":
                try:
                    with _quiet():
                        exec(compile(cell.source, f"<setup {cell.grade_id}>", "exec"), setup_ns)
                except Exception as exc:
                    raise SourceError(f"{lab.name}: set-up cell {cell.grade_id} failed in the "
                                      f"grader: {type(exc).__name__}: {exc}") from exc
                source = cell.source
            elif cell.kind == "answer":
                if theirs is None or theirs.cell_type != "code":
                    result.flags.add("missing")
                    source = released
                else:
                    source = theirs.source
            else:
                result.tests.append(_run_test(cell, setup_ns, answers, session))
                continue
            flag = flag_of(session.run_cell(source, setup=cell.kind == "setup"))
            if flag:
                result.flags.add(flag)
    finally:
        if own:
            session.close()
        result.seconds = time.monotonic() - start
    return result


def grade_student(labs: list[tuple[LabNotebook, str | Path | None]], student: str,
                  limits: Limits, isolated: bool, threads: int = 1) -> list[NotebookResult]:
    """Grade one student's labs in order, in one kernel reused from lab to lab.

    ``labs`` pairs each lab with the student's submission (``None``: not submitted). Each lab
    starts from an empty namespace and has its own wall clock; a lab whose code killed or hung
    the kernel leaves the next lab a fresh one (:class:`KernelSession`). The kernel is closed
    at the end, whatever happens.
    """
    session = KernelSession(limits, isolated, threads)
    try:
        return [grade_notebook(lab, student, submission, limits, isolated, threads, session)
                for lab, submission in labs]
    finally:
        session.close()
