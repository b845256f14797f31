"""What grading writes: grades.csv, the per-student summary, details JSON and feedback.

``grades.csv`` has the header ``student,lab,test,points,max_points,flags``: one row per
student × lab × graded test, sorted, flags ``;``-separated (the notebook's flags — missing,
tampered, not_submitted, not_regular, unreadable, invalid, and what happened while its set-up
and answer cells ran — plus what happened during that test). Points are written as ``2`` or
``1.5``, never ``2.0``. Feedback is Markdown in which every piece of text is escaped
(:func:`escape`): nothing in it renders as a link, an image, HTML or formatting.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
from pathlib import Path

from rnnlab.grading.results import FLAG_MEANINGS, NotebookResult, TestResult

__all__ = ["HEADER", "rows", "write_grades", "write_summary", "write_details", "read_details",
           "feedback_markdown", "write_feedback", "feedback_name", "escape", "write_csv"]

HEADER = ("student", "lab", "test", "points", "max_points", "flags")
_MARKDOWN = re.compile(r"([\\`*_\[\]~|])")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def rows(results: list[NotebookResult]) -> list[tuple[str, ...]]:
    """The CSV rows (without header) of a list of notebook results, sorted."""
    out = []
    for result in results:
        for test in result.tests:
            flags = ";".join(sorted(set(result.flags) | set(test.flags)))
            out.append((result.student, result.lab, test.test, _number(test.points),
                        _number(test.max_points), flags))
    return sorted(out)


def write_csv(path: str | Path, header: tuple[str, ...], table) -> Path:
    """Write ``header`` and the rows of ``table`` as CSV (LF line ends, UTF-8): the grader's
    CSV files all read the same."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(table)
    return path


def write_grades(results: list[NotebookResult], path: str | Path) -> Path:
    """Write grades.csv (LF line ends, UTF-8)."""
    return write_csv(path, HEADER, rows(results))


def write_summary(results: list[NotebookResult], path: str | Path) -> Path:
    """Write ``student,<lab>…,total,max_points``: one row per student, points per lab."""
    labs = sorted({r.lab for r in results})
    maxima = {r.lab: sum(t.max_points for t in r.tests) for r in results}
    table: dict[str, dict[str, float]] = {}
    for result in results:
        table.setdefault(result.student, {})[result.lab] = sum(t.points for t in result.tests)
    total = _number(sum(maxima[lab] for lab in labs))
    lines = []
    for student in sorted(table):
        scores = [table[student].get(lab, 0.0) for lab in labs]
        lines.append((student, *map(_number, scores), _number(sum(scores)), total))
    return write_csv(path, ("student", *labs, "total", "max_points"), lines)


def write_details(results: list[NotebookResult], path: str | Path) -> Path:
    """Write every result, with the feedback-safe messages, as JSON (input of ``feedback``)."""
    data = [{"student": r.student, "lab": r.lab, "flags": sorted(r.flags),
             "seconds": round(r.seconds, 3),
             "tests": [{"test": t.test, "points": t.points, "max_points": t.max_points,
                        "flags": list(t.flags), "message": t.message} for t in r.tests]}
            for r in sorted(results, key=lambda r: (r.student, r.lab))]
    path = Path(path)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_details(path: str | Path) -> list[NotebookResult]:
    """Read what :func:`write_details` wrote."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [NotebookResult(d["student"], d["lab"], set(d["flags"]),
                           [TestResult(t["test"], t["points"], t["max_points"],
                                       tuple(t["flags"]), t["message"]) for t in d["tests"]],
                           d.get("seconds", 0.0))
            for d in data]


def escape(text: str) -> str:
    """``text`` as literal Markdown inside a line: ``&``, ``<``, ``>`` as HTML entities, the
    characters of emphasis, code, links and tables backslash-escaped, whitespace (newlines
    included) collapsed to single spaces."""
    text = html.escape(" ".join(str(text).split()), quote=False)
    return _MARKDOWN.sub(r"\\\1", text)


def feedback_markdown(student: str, results: list[NotebookResult]) -> str:
    """One student's feedback: per lab, points and each failed check.

    Visible tests are described by their ``check`` description and the failing assertion's
    message as the instructor wrote it (:mod:`rnnlab.grading.messages`); hidden ones only as
    "hidden test N failed". No test code, no solution text and nothing the student's code
    produced appear, and all text is escaped.
    """
    lines = [f"# Feedback for {escape(student)}", ""]
    for result in sorted(results, key=lambda r: r.lab):
        lines += [f"## {escape(result.lab)}: {_number(result.points)} / "
                  f"{_number(result.max_points)} points", ""]
        for flag in sorted(result.flags):
            lines.append(f"- **{escape(flag)}**: {escape(FLAG_MEANINGS.get(flag, flag))}")
        for test in result.tests:
            mark = "✓" if test.points == test.max_points else "✗"
            line = (f"- {mark} {escape(test.test)} ({_number(test.points)}/"
                    f"{_number(test.max_points)})")
            if test.message:
                line += f": {escape(test.message)}"
            if test.flags:
                line += f" [{escape(', '.join(test.flags))}]"
            lines.append(line)
        lines.append("")
    return "\n".join(lines)


_NAME_MAX = 255


def feedback_name(student: str) -> str:
    """``<student>.md``; a name too long for a file (255 bytes with its suffix) is cut and given
    a digest of the whole, so two long names that share their start stay two files."""
    name = f"{student}.md"
    if len(name.encode("utf-8", "surrogateescape")) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(student.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    head = student.encode("utf-8", "surrogateescape")[:_NAME_MAX - len(digest) - 4]
    return f"{head.decode('utf-8', 'ignore')}-{digest}.md"


def write_feedback(results: list[NotebookResult], directory: str | Path) -> list[Path]:
    """Write ``directory/<student>.md`` (:func:`feedback_name`) for every student; returns the
    paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    by_student: dict[str, list[NotebookResult]] = {}
    for result in results:
        by_student.setdefault(result.student, []).append(result)
    written = []
    for student in sorted(by_student):
        path = directory / feedback_name(student)
        path.write_text(feedback_markdown(student, by_student[student]), encoding="utf-8")
        written.append(path)
    return written
