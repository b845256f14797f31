"""The lab notebook model: nbgrader metadata, cell kinds, markers and validation.

A lab notebook (``solutions/NN_name.ipynb``) is a sequence of cells, each carrying
``cell.metadata.nbgrader = {grade_id, solution, grade, locked, points, schema_version}``.
From those flags every cell is one of four kinds:

=========  ============================================  ==========================================
kind       flags                                         where the grader runs it
=========  ============================================  ==========================================
setup      code, ``solution: false, grade: false``       student kernel *and* grader process
answer     code, ``solution: true``                      student kernel only
test       code, ``grade: true``                         grader process only (answers are proxies)
markdown   markdown (instructor text or free answer)     nowhere
=========  ============================================  ==========================================

A cell tagged ``skip-grading`` (``cell.metadata.tags``) is run by nobody at grading time. An
answer cell may declare what its answers must not call, as dotted names in
``cell.metadata.rnnlab.forbidden`` (e.g. ``["torch.autograd.grad", "rnnlab.cells"]``: a function,
a class, a module or a C function; see :mod:`rnnlab.grading.recorder`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = [
    "BEGIN_SOLUTION", "END_SOLUTION", "BEGIN_HIDDEN", "END_HIDDEN", "SKIP_TAG",
    "LabCell", "LabNotebook", "read_notebook", "parse_lab", "marker_regions", "defined_names",
    "submitted_cells",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
SKIP_TAG = "skip-grading"
NBFORMAT_VERSION = 4


@dataclass(frozen=True)
class LabCell:
    """One cell of a lab: its kind, grade_id, source and points (0 unless a test)."""

    kind: str            # "setup" | "answer" | "test" | "markdown"
    grade_id: str
    source: str
    points: float
    locked: bool
    skip: bool           # tagged skip-grading
    cell_type: str       # "code" | "markdown"
    forbidden: tuple[str, ...] = ()     # what an answer cell's answers must not call


@dataclass(frozen=True)
class LabNotebook:
    """A parsed lab: its name (file stem), cells in order, and the raw notebook."""

    name: str
    cells: tuple[LabCell, ...]
    notebook: nbformat.NotebookNode

    @property
    def tests(self) -> tuple[LabCell, ...]:
        """The graded test cells, in notebook order."""
        return tuple(c for c in self.cells if c.kind == "test")

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.tests)

    def by_id(self) -> dict[str, LabCell]:
        return {c.grade_id: c for c in self.cells}


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read a notebook file as nbformat 4 (``ValueError`` naming the file if unreadable)."""
    path = Path(path)
    try:
        return nbformat.read(path, as_version=NBFORMAT_VERSION)
    except Exception as exc:   # nbformat raises json, validation and OS errors alike
        raise ValueError(f"path: expected a readable .ipynb notebook, got {path} ({exc})") from exc


def marker_regions(source: str, begin: str, end: str, where: str) -> list[tuple[int, int]]:
    """Line ranges ``(first, last)`` (0-based, inclusive, markers included) of begin/end pairs.

    Raises:
        ValueError: a marker without its partner, or nested markers; ``where`` names the cell.
    """
    regions: list[tuple[int, int]] = []
    start = None
    for number, line in enumerate(source.splitlines()):
        text = line.strip()
        if text == begin:
            if start is not None:
                raise ValueError(f"{where}: nested {begin!r} at line {number + 1}")
            start = number
        elif text == end:
            if start is None:
                raise ValueError(f"{where}: {end!r} without {begin!r} at line {number + 1}")
            regions.append((start, number))
            start = None
    if start is not None:
        raise ValueError(f"{where}: {begin!r} at line {start + 1} has no {end!r}")
    return regions


def defined_names(source: str) -> tuple[str, ...]:
    """Top-level names an answer cell defines (``def``, ``class``, assignments), in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ()
    names: list[str] = []
    for node in tree.body:
        targets: list[ast.AST] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            names.extend(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return tuple(dict.fromkeys(names))


_GRADE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def submitted_cells(notebook: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """A student's notebook's cells by ``grade_id`` (the first cell of each id; cells without
    an nbgrader ``grade_id`` string are not the lab's and are left out)."""
    cells = {}
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if isinstance(grade_id, str) and grade_id not in cells:
            cells[grade_id] = cell
    return cells


def _forbidden(cell: nbformat.NotebookNode, kind: str, where: str) -> tuple[str, ...]:
    declared = cell.get("metadata", {}).get("rnnlab", {})
    names = declared.get("forbidden", []) if isinstance(declared, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) and _DOTTED.match(n)
                                              for n in names):
        raise ValueError(f"{where}: expected metadata.rnnlab.forbidden to be a list of dotted "
                         f"names, got {names!r}")
    if names and kind != "answer":
        raise ValueError(f"{where}: expected forbidden calls on an answer cell only, got "
                         f"them on a {kind} cell")
    return tuple(names)


def _kind(cell: nbformat.NotebookNode, meta: dict, where: str) -> str:
    solution, grade = bool(meta.get("solution")), bool(meta.get("grade"))
    if cell.cell_type == "markdown":
        if grade:
            raise ValueError(f"{where}: a markdown cell cannot be a graded test (grade: true)")
        return "markdown"
    if cell.cell_type != "code":
        raise ValueError(f"{where}: expected a code or markdown cell, got {cell.cell_type!r}")
    if solution and grade:
        raise ValueError(f"{where}: expected solution or grade, got both true")
    return "answer" if solution else "test" if grade else "setup"


def parse_lab(notebook: nbformat.NotebookNode, name: str) -> LabNotebook:
    """Classify and validate every cell of a solution notebook.

    Raises:
        ValueError: a cell without nbgrader metadata, a bad or duplicate ``grade_id``, a test
            without positive ``points``, an answer tagged ``skip-grading``, unbalanced markers,
            markers in the wrong kind of cell, or a malformed ``forbidden`` declaration. The
            message names the notebook and cell.
    """
    cells: list[LabCell] = []
    seen: set[str] = set()
    for index, cell in enumerate(notebook.cells):
        where = f"{name}: cell {index}"
        meta = cell.get("metadata", {}).get("nbgrader")
        if not isinstance(meta, dict) or not meta.get("grade_id"):
            raise ValueError(f"{where}: expected nbgrader metadata with a grade_id, got {meta!r}")
        grade_id = str(meta["grade_id"])
        where = f"{name}: cell {index} ({grade_id})"
        if not _GRADE_ID.match(grade_id) or grade_id in seen:
            raise ValueError(f"{where}: expected a unique grade_id of [A-Za-z0-9_.-], got "
                             f"{grade_id!r}")
        seen.add(grade_id)
        kind = _kind(cell, meta, where)
        source = cell.source
        skip = SKIP_TAG in cell.get("metadata", {}).get("tags", [])
        points = 0.0
        if kind == "test":
            points = meta.get("points")
            if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
                raise ValueError(f"{where}: expected positive points on a test, got {points!r}")
            points = float(points)
        if kind in ("answer", "test") and skip:
            raise ValueError(f"{where}: expected no {SKIP_TAG!r} tag on an {kind} cell")
        solution = marker_regions(source, BEGIN_SOLUTION, END_SOLUTION, where)
        hidden = marker_regions(source, BEGIN_HIDDEN, END_HIDDEN, where)
        if solution and kind not in ("answer",) and not bool(meta.get("solution")):
            raise ValueError(f"{where}: {BEGIN_SOLUTION!r} outside a solution cell")
        if hidden and kind != "test":
            raise ValueError(f"{where}: {BEGIN_HIDDEN!r} outside a test cell")
        locked = bool(meta.get("locked", kind != "answer"))
        cells.append(LabCell(kind, grade_id, source, points, locked, skip, cell.cell_type,
                             _forbidden(cell, kind, where)))
    return LabNotebook(name, tuple(cells), notebook)
