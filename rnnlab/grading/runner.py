"""Grade one student's submitted notebooks against their instructor sources.

The notebook that is run is *rebuilt* from the instructor's source: every set-up and test cell
is the instructor's, and only the answer cells (matched by ``grade_id``) come from the student.
Walking the cells in order, skipping those tagged ``skip-grading``:

* a set-up cell runs in the checker process (:mod:`rnnlab.grading.checker`) *and* in the
  student's kernel;
* an answer cell runs in the student's kernel only;
* a test cell runs in the checker process, in a copy of the set-up namespace where each answer
  name it uses is bound to a proxy (:mod:`rnnlab.grading.answers`): calling it runs the call in
  the kernel and returns plain data. So the assertions, ``torch.allclose`` and the test code
  itself are out of the student's reach, and whatever the checks do with a student's result
  happens under the checker's limits, not in the grader.

A test scores all its points when it runs to the end, none otherwise. :func:`grade_student`
grades one student's labs one after the other in one kernel, emptied between labs; a
submission that cannot be used (:mod:`rnnlab.grading.submissions`), or any failure of the
grader on one notebook, is that notebook's flag, never the end of grading.
"""

from __future__ import annotations

import time
from pathlib import Path

from rnnlab.grading.checker import Checker, SourceError
from rnnlab.grading.labs import release_source
from rnnlab.grading.limits import Limits
from rnnlab.grading.notebook import LabNotebook, defined_names, submitted_cells
from rnnlab.grading.results import NotebookResult, TestResult
from rnnlab.grading.session import KernelSession, flag_of
from rnnlab.grading.submissions import read_submission
from rnnlab.grading.template import KernelTemplate

__all__ = ["grade_notebook", "grade_student", "SourceError", "GRADER_FAILED"]

GRADER_FAILED = "the grader failed on this notebook"


def _normal(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _zero(lab: LabNotebook, result: NotebookResult, message: str = "") -> NotebookResult:
    result.tests = [TestResult(c.grade_id, 0.0, c.points, (), message) for c in lab.tests]
    return result


def grade_notebook(lab: LabNotebook, student: str, folder: str | Path, limits: Limits,
                   session: KernelSession, checker: Checker) -> NotebookResult:
    """Grade ``folder/<lab>.ipynb``, one student's notebook of ``lab``.

    ``session`` is the student's kernel session, shared by their labs; ``checker`` runs the
    set-up and test cells.

    Raises:
        SourceError: an instructor set-up cell failed in the checker.
    """
    start = time.monotonic()
    result = NotebookResult(student, lab.name)
    notebook, problem = read_submission(folder, f"{lab.name}.ipynb")
    if problem is not None:
        result.flags.add(problem)
        return _zero(lab, result)
    submitted = submitted_cells(notebook)
    answers = {name: cell.forbidden for cell in lab.cells if cell.kind == "answer"
               for name in defined_names(cell.source)}
    session.begin_lab()
    checker.begin_lab(lab.name)
    try:
        for cell in lab.cells:
            theirs = submitted.get(cell.grade_id)
            released = release_source(cell.source, cell.cell_type)
            if cell.locked and (theirs is None or _normal(theirs.source) != _normal(released)):
                result.flags.add("tampered")
            if cell.skip or cell.kind == "markdown":
                continue
            if cell.kind == "test":
                result.tests.append(checker.run_test(cell, answers, session))
                continue
            if cell.kind == "setup":
                checker.run_setup(cell.grade_id, cell.source)
                source = cell.source
            elif theirs is None or theirs.cell_type != "code":
                result.flags.add("missing")
                source = released
            else:
                source = theirs.source
            flag = flag_of(session.run_cell(source, setup=cell.kind == "setup"))
            if flag:
                result.flags.add(flag)
    finally:
        result.seconds = time.monotonic() - start
    return result


def grade_student(labs: list[tuple[LabNotebook, str | Path]], student: str, limits: Limits,
                  isolated: bool, *, threads: int = 1, cpus: list[int] | None = None,
                  tmp_root: str | None = None, checker: Checker | None = None,
                  template: KernelTemplate | None = None) -> list[NotebookResult]:
    """Grade one student's labs in order, in one kernel reused from lab to lab.

    ``labs`` pairs each lab with the student's folder. Each lab starts from an empty namespace
    and has its own wall clock; a lab whose code killed or hung the kernel leaves the next lab a
    fresh one (:class:`KernelSession`). ``checker`` (made and closed here when ``None``) may be
    shared by the students a process grades, and so may ``template`` (kernels are then forked from
    it, see :class:`KernelSession`). The kernel is closed at the end, whatever happens.

    Raises:
        SourceError: an instructor set-up cell failed (the lab is broken for everyone).
    """
    session = KernelSession(limits, isolated, threads, cpus, tmp_root, template)
    own = checker is None
    checker = checker or Checker(limits)
    results = []
    try:
        for lab, folder in labs:
            try:
                results.append(grade_notebook(lab, student, folder, limits, session, checker))
            except SourceError:
                raise
            except Exception as exc:   # a grader bug costs this notebook, not the whole run
                result = NotebookResult(student, lab.name, {"error"})
                results.append(_zero(lab, result, f"{GRADER_FAILED} ({type(exc).__name__})"))
                session.close(grace=0.0)
    finally:
        session.close()
        if own:
            checker.close()
    return results
