"""``rnnlab release``: turn instructor solution notebooks into student labs, byte for byte.

For every cell of a solution notebook:

* a ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region (markers included) becomes
  ``raise NotImplementedError()`` at the marker's indentation in a code cell, and
  ``YOUR ANSWER HERE`` in a markdown cell; what precedes it (``def`` line, docstring) stays;
* a ``### BEGIN HIDDEN TESTS`` … ``### END HIDDEN TESTS`` region is removed;
* outputs and execution counts are cleared, and the volatile ``execution`` timing metadata
  of an executed notebook dropped; nbgrader metadata, tags and cell ids are kept.

The output is ``nbformat.writes`` (sorted keys, one-space indent) plus a final newline, so the
same solutions always give the same bytes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

from rnnlab.grading.notebook import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    END_HIDDEN,
    END_SOLUTION,
    parse_lab,
    read_notebook,
)

__all__ = ["release_source", "release_notebook", "release_text", "release", "lab_paths",
           "copy_labs", "REPOSITORY_LABS"]

REPOSITORY_LABS = Path(__file__).resolve().parents[2] / "labs"
"""``labs/`` of the checkout this package runs from (an editable install, or the repository)."""

CODE_STUB = "raise NotImplementedError()"
MARKDOWN_STUB = "YOUR ANSWER HERE"


def _replace_regions(source: str, begin: str, end: str, stub: str | None) -> str:
    lines = source.splitlines()
    out: list[str] = []
    inside = False
    for line in lines:
        text = line.strip()
        if text == begin:
            inside = True
            if stub is not None:
                indent = line[: len(line) - len(line.lstrip())]
                out.append(indent + stub)
        elif text == end:
            inside = False
        elif not inside:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


def release_source(source: str, cell_type: str = "code") -> str:
    """The student version of one cell's source (solution regions stubbed, hidden tests cut)."""
    if cell_type not in ("code", "markdown", "raw"):
        raise ValueError(f"cell_type: expected 'code', 'markdown' or 'raw', got {cell_type!r}")
    stub = CODE_STUB if cell_type == "code" else MARKDOWN_STUB
    source = _replace_regions(source, BEGIN_SOLUTION, END_SOLUTION, stub)
    return _replace_regions(source, BEGIN_HIDDEN, END_HIDDEN, None)


def release_notebook(notebook: nbformat.NotebookNode, name: str = "notebook"
                     ) -> nbformat.NotebookNode:
    """A released copy of a solution notebook (the input is validated and left unchanged)."""
    if not isinstance(notebook, nbformat.NotebookNode):
        raise TypeError(f"notebook: expected an nbformat.NotebookNode, got "
                        f"{type(notebook).__name__}")
    parse_lab(notebook, name)
    released = copy.deepcopy(notebook)
    for cell in released.cells:
        cell.source = release_source(cell.source, cell.cell_type)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return released


def release_text(path: str | Path) -> str:
    """The exact text ``rnnlab release`` writes for the solution notebook at ``path``."""
    path = Path(path)
    released = release_notebook(read_notebook(path), path.stem)
    nbformat.validate(released)
    text = nbformat.writes(released)
    return text if text.endswith("\n") else text + "\n"


def lab_paths(source_dir: str | Path) -> list[Path]:
    """The solution notebooks of a directory, sorted by name (checkpoints skipped)."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise ValueError(f"source_dir: expected a directory of notebooks, got {source_dir}")
    return sorted(p for p in source_dir.glob("*.ipynb") if p.is_file())


def release(source_dir: str | Path, dest_dir: str | Path) -> list[Path]:
    """Release every ``source_dir/*.ipynb`` into ``dest_dir`` (created); returns written paths.

    Every notebook is released in memory first, so a bad source writes nothing.
    """
    texts = {path.name: release_text(path) for path in lab_paths(source_dir)}
    dest_dir = Path(dest_dir)
    if dest_dir.resolve() == Path(source_dir).resolve():
        raise ValueError(f"dest_dir: expected a directory other than the source, got {dest_dir}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        target = dest_dir / name
        target.write_bytes(text.encode("utf-8"))
        written.append(target)
    return written


def copy_labs(dest_dir: str | Path, source_dir: str | Path | None = None) -> list[Path]:
    """Copy the released labs (default :data:`REPOSITORY_LABS`) into ``dest_dir`` (created).

    Students work on the copy: JupyterLab saves as one goes, so working in the repository's
    ``labs/`` would change tracked files. Nothing is ever overwritten — a student's work may
    already be in ``dest_dir`` — and nothing is copied when any lab is already there.

    Raises:
        FileNotFoundError: the source holds no notebook (a package installed without its
            repository: pass ``source_dir``).
        FileExistsError: ``dest_dir`` already holds a lab of that name, or is the source.
    """
    source = Path(REPOSITORY_LABS if source_dir is None else source_dir)
    labs = sorted(source.glob("*.ipynb")) if source.is_dir() else []
    if not labs:
        raise FileNotFoundError(f"source_dir: expected released labs (*.ipynb) in {source}, "
                                "found none; pass the directory of the labs")
    dest = Path(dest_dir)
    if dest.exists() and dest.resolve() == source.resolve():
        raise FileExistsError(f"dest_dir: expected a directory other than the labs, got {dest}")
    present = [p.name for p in labs if (dest / p.name).exists()]
    if present:
        raise FileExistsError(f"dest_dir: {dest} already holds {', '.join(present)}; nothing "
                              "was copied (move them away, or copy into a new directory)")
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in labs:
        target = dest / path.name
        with open(target, "xb") as handle:          # never over a file made meanwhile
            handle.write(path.read_bytes())
        copied.append(target)
    return copied
