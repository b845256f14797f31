"""The code base stays ruff-clean (config in pyproject.toml), notebooks included, and the
library code the book shows fits its text column (88 columns)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess

import pytest


def test_ruff_finds_nothing(root):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed: pip install -e '.[dev]'")
    result = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:]


def _included(root):
    """``(path, pyobject or None)`` of every ``literalinclude`` of library code in chapters."""
    import nbformat

    pattern = re.compile(r"```\{literalinclude\} \.\./(\S+)\n((?::\w+:.*\n)*)")
    found = set()
    for path in sorted((root / "chapters").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for match in pattern.finditer(cell.source + "\n"):
                options = dict(re.findall(r":(\w+): *(.*)", match.group(2)))
                found.add((match.group(1), options.get("pyobject")))
    return sorted(found, key=str)


def test_library_code_the_book_includes_fits_the_column(root):
    # chapter 1 reads rnnlab/cells.py as the model of a cell, so the whole file fits
    too_wide = [f"rnnlab/cells.py:{n}" for n, line in
                enumerate((root / "rnnlab" / "cells.py").read_text().splitlines(), 1)
                if len(line) > 88]
    for relative, name in _included(root):
        source = (root / relative).read_text()
        lines = source.splitlines()
        if name is not None:
            nodes = [node for node in ast.walk(ast.parse(source))
                     if getattr(node, "name", None) == name]
            assert nodes, f"{relative} has no {name} (a chapter includes it)"
            lines = lines[nodes[0].lineno - 1:nodes[0].end_lineno]
        too_wide += [f"{relative}:{name}: {line}" for line in lines if len(line) > 88]
    assert too_wide == []
