"""The one line of feedback a failed test gets: the instructor's words, nothing of the student's.

A student's kernel keeps state from call to call, so anything it returns after a hidden test
ran — a value, a shape, an exception message — may carry that hidden test's inputs. Feedback is
therefore built only from what the instructor wrote:

* a failure inside a hidden-test region: ``hidden test N failed``;
* otherwise ``<check description>: <reason>``, where the reason is the failing ``assert``'s
  message *as written in the test* — a literal string, or an f-string whose replacement fields
  show as ``…`` — or ``assertion failed``; ``not implemented yet``, or ``uses <answer>, which is
  not implemented yet`` when the answer tested calls another answer of the lab that is not
  written (its name is the instructor's); the grader's own words for a timeout, a dead kernel,
  memory or a forbidden call; or ``failed with <BuiltinError>`` for any other exception (its
  message is the student's, or about the student's data).
"""

from __future__ import annotations

import ast

from rnnlab.grading.answers import (
    BUILTIN_ERRORS,
    GradingEvent,
    StudentException,
    UsesUnanswered,
)
from rnnlab.grading.notebook import BEGIN_HIDDEN, END_HIDDEN, marker_regions

__all__ = ["failure_message", "failure_lines", "assertion_template"]

_LIMIT = 300


def failure_lines(exc: BaseException, filename: str) -> list[int]:
    """0-based line numbers of ``filename``'s frames in ``exc``'s traceback, outermost first."""
    lines, tb = [], exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            lines.append(tb.tb_lineno - 1)
        tb = tb.tb_next
    return lines


def assertion_template(source: str, line: int) -> str:
    """The message of the ``assert`` on 0-based ``line`` of ``source`` as written (``""`` if
    it has none or it is not a string literal or f-string); f-string fields become ``…``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and node.lineno - 1 <= line <= node.end_lineno - 1:
            message = node.msg
            if isinstance(message, ast.Constant) and isinstance(message.value, str):
                return message.value
            if isinstance(message, ast.JoinedStr):
                return "".join(part.value if isinstance(part, ast.Constant) else "…"
                               for part in message.values)
            return ""
    return ""


def _reason(exc: BaseException, source: str, lines: list[int]) -> str:
    if isinstance(exc, UsesUnanswered):
        return str(exc)
    if isinstance(exc, NotImplementedError):
        return "not implemented yet"
    if isinstance(exc, GradingEvent):
        return str(exc)
    if isinstance(exc, AssertionError):
        template = assertion_template(source, lines[-1]) if lines else ""
        return " ".join(template.split()) or "assertion failed"
    if isinstance(exc, StudentException):
        return "failed with an exception of the answer's own type"
    name = type(exc).__name__
    return f"failed with {name}" if BUILTIN_ERRORS.get(name) is type(exc) else "failed"


def failure_message(exc: BaseException, source: str, filename: str,
                    failed_checks: list[tuple[str, BaseException]]) -> str:
    """The feedback line of a test that raised ``exc`` (see the module docstring)."""
    lines = failure_lines(exc, filename)
    for number, (first, last) in enumerate(
            marker_regions(source, BEGIN_HIDDEN, END_HIDDEN, filename), start=1):
        if any(first <= line <= last for line in lines):
            return f"hidden test {number} failed"
    message = _reason(exc, source, lines)
    description = next((d for d, e in reversed(failed_checks) if e is exc), None)
    if description is not None:
        message = f"{' '.join(str(description).split())}: {message}"
    return message if len(message) <= _LIMIT else message[: _LIMIT - 1] + "…"
