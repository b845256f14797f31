"""What grading produces: one :class:`TestResult` per graded test, one :class:`NotebookResult`
per student × lab. Plain records, shared by the runner that fills them and the reports that
write them, so that neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TestResult", "NotebookResult", "FLAG_MEANINGS"]

FLAG_MEANINGS = {
    "error": "your code raised an error or returned something that is not plain data",
    "forbidden_call": "your answer called a function this lab asks you not to use",
    "invalid": "the submitted file is not a valid notebook (a cell without type or source, "
               "a source that is not text, …)",
    "kernel_died": "your code stopped the Python kernel (os._exit, a crash, a killed process)",
    "memory": "your code ran out of the memory allowed",
    "missing": "an answer cell was deleted or lost its metadata; it counted as unanswered",
    "not_regular": "the submission is not a regular file (a link, a pipe, a device) or sits "
                   "in a linked folder; it was not read",
    "not_submitted": "no notebook was submitted for this lab",
    "tampered": "a locked cell was edited or deleted; the original was used",
    "timeout": "your code took longer than the time allowed",
    "unreadable": "the submitted file is not a readable notebook",
}
"""Every flag the grader writes, with the sentence the feedback shows for it."""


@dataclass(frozen=True)
class TestResult:
    """One graded test: points scored, flags of this test, and feedback safe to show."""

    __test__ = False          # a record, not a pytest test class (its name starts with Test)

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

    @property
    def points(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def max_points(self) -> float:
        return sum(t.max_points for t in self.tests)
