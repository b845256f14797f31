"""rnnlab is layered as CONTRIBUTING.md draws it: a module imports only modules listed before it."""

from __future__ import annotations

import ast

import pytest

ORDER = ["checks", "layout", "history", "cells", "loop", "models", "bptt", "jacobians",
         "diagnostics", "init", "clipping", "tasks", "cliff", "lru", "flossing", "train",
         "ensemble", "long_range", "plotting", "diagrams", "timing", "device", "kernels",
         "notebook", "labkit"]

# The grading child pre-imports what every lab imports, so that its memory counts before the
# student's limit is set; that is the lab's dependency, not the grader's.
PREIMPORTED_FOR_LABS = {"checkproc.py": {"labkit"}}


def _rnnlab_imports(path) -> set[str]:
    """The rnnlab submodules a file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "rnnlab":
                found.update([parts[1]] if len(parts) > 1 else
                             [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("rnnlab."))
    return found


def test_every_module_of_the_package_has_a_place_in_the_order(root):
    modules = {p.stem for p in (root / "rnnlab").glob("*.py")} - {"__init__", "__main__", "cli"}
    assert modules == set(ORDER)


@pytest.mark.parametrize("module", ORDER)
def test_module_imports_only_modules_listed_before_it(root, module):
    imported = _rnnlab_imports(root / "rnnlab" / f"{module}.py") - {module}
    later = {name for name in imported if name not in ORDER[:ORDER.index(module)]}
    assert not later, f"rnnlab.{module} imports {sorted(later)}, listed after it"


def test_grading_imports_nothing_of_the_stack(root):
    for path in (root / "rnnlab" / "grading").glob("*.py"):
        stack = _rnnlab_imports(path) - {"grading"} - PREIMPORTED_FOR_LABS.get(path.name, set())
        assert not stack, f"{path.name} imports rnnlab.{sorted(stack)}"


def test_contributing_draws_the_same_order(root):
    text = (root / "CONTRIBUTING.md").read_text()
    section = text[text.index("## Architecture"):]
    block = section[section.index("```") + 3:]
    block = block[:block.index("```")]
    drawn = [name.strip() for line in block.splitlines() if line and not line.startswith(" ")
             for name in line.split("  ")[0].split(",")]
    assert [name for name in drawn if name in ORDER] == ORDER


def test_no_module_imports_a_private_name_of_another(root):
    """A name that two modules need is public in one of them (or lives in a shared module)."""
    private = []
    for path in sorted((root / "rnnlab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rnnlab"):
                private += [f"{path.relative_to(root)}: from {node.module} import {a.name}"
                            for a in node.names
                            if a.name.startswith("_") and not a.name.endswith("__")]
    assert private == []


def test_package_docstring_and_exports_name_every_public_module(root):
    import rnnlab

    modules = {p.stem for p in (root / "rnnlab").glob("*.py")} - {"__init__", "__main__"}
    modules.add("grading")
    missing_doc = sorted(m for m in modules if f"``{m}``" not in rnnlab.__doc__)
    missing_all = sorted(modules - set(rnnlab.__all__))
    assert missing_doc == [] and missing_all == []
