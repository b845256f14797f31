"""`rnnlab release`: solution notebooks → student labs, deterministic, nothing secret leaks."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from rnnlab.cli import main
from rnnlab.grading.labs import release, release_notebook, release_source
from rnnlab.grading.notebook import parse_lab, read_notebook

FIXTURE = Path(__file__).parent / "fixtures" / "grading" / "solutions"


def _solution_lines(notebook) -> set[str]:
    """Non-blank lines inside solution or hidden-test regions and nowhere else in the source."""
    inside_lines, outside_lines, inside = set(), set(), False
    for cell in notebook.cells:
        for line in cell.source.splitlines():
            text = line.strip()
            if text in ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS"):
                inside = True
            elif text in ("### END SOLUTION", "### END HIDDEN TESTS"):
                inside = False
            elif text:
                (inside_lines if inside else outside_lines).add(text)
    return inside_lines - outside_lines


def _lines(path: Path) -> set[str]:
    return {line.strip() for cell in read_notebook(path).cells
            for line in cell.source.splitlines()}


def test_release_twice_gives_identical_bytes(tmp_path):
    assert main(["release", str(FIXTURE), str(tmp_path / "a")]) == 0
    assert main(["release", str(FIXTURE), str(tmp_path / "b")]) == 0
    first = (tmp_path / "a" / "fx_lab.ipynb").read_bytes()
    assert first == (tmp_path / "b" / "fx_lab.ipynb").read_bytes()
    assert first != (FIXTURE / "fx_lab.ipynb").read_bytes()


def test_release_leaks_no_solution_or_hidden_test_text(tmp_path):
    release(FIXTURE, tmp_path)
    text = (tmp_path / "fx_lab.ipynb").read_text(encoding="utf-8")
    secret = _solution_lines(read_notebook(FIXTURE / "fx_lab.ipynb"))
    assert len(secret) >= 6
    assert not secret & _lines(tmp_path / "fx_lab.ipynb")
    for line in secret:
        assert line not in text
    for marker in ("SOLUTION-TOKEN", "HIDDEN-TOKEN", "### BEGIN", "### END"):
        assert marker not in text


def test_released_answers_keep_signature_and_raise_not_implemented(tmp_path):
    release(FIXTURE, tmp_path)
    lab = read_notebook(tmp_path / "fx_lab.ipynb")
    cells = {c.metadata.nbgrader.grade_id: c for c in lab.cells}
    namespace: dict = {}
    exec(cells["answer-sigmoid"].source, namespace)
    assert cells["answer-sigmoid"].source.startswith("def sigmoid(x):\n    \"\"\"Logistic")
    with pytest.raises(NotImplementedError):
        namespace["sigmoid"](0.0)
    assert cells["answer-choice"].source == "raise NotImplementedError()"
    visible = cells["test-sigmoid"].source
    assert "sigmoid matches torch.sigmoid" in visible and "saturates" not in visible


def test_release_clears_outputs_and_keeps_nbgrader_metadata(tmp_path):
    source = read_notebook(FIXTURE / "fx_lab.ipynb")
    for cell in source.cells:                     # pretend the instructor ran the notebook
        if cell.cell_type == "code":
            cell.execution_count = 7
            cell.outputs = [nbformat.v4.new_output("stream", text="✓ ok\n")]
            cell.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00Z"}
    nbformat.write(source, tmp_path / "fx_lab.ipynb")
    release(tmp_path, tmp_path / "out")
    clean = tmp_path / "clean"
    release(FIXTURE, clean)
    released = (tmp_path / "out" / "fx_lab.ipynb").read_bytes()
    assert released == (clean / "fx_lab.ipynb").read_bytes()
    data = json.loads(released)
    nbformat.validate(nbformat.reads(released.decode(), as_version=4))
    original = json.loads((FIXTURE / "fx_lab.ipynb").read_bytes())
    for ours, theirs in zip(data["cells"], original["cells"], strict=True):
        assert ours["metadata"]["nbgrader"] == theirs["metadata"]["nbgrader"]
        assert ours.get("metadata", {}).get("tags") == theirs.get("metadata", {}).get("tags")
        if ours["cell_type"] == "code":
            assert ours["outputs"] == [] and ours["execution_count"] is None


def test_release_source_keeps_indentation_and_stubs_markdown():
    code = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    assert release_source(code) == "def f(x):\n    y = 1\n    raise NotImplementedError()"
    text = "Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"
    assert release_source(text, "markdown") == "Why?\nYOUR ANSWER HERE"
    tests = "assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n### END HIDDEN TESTS\n"
    assert release_source(tests) == "assert f(1) == 2"


def _lab(cells):
    notebook = nbformat.v4.new_notebook()
    for index, (source, meta) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source)
        cell.id = f"c{index}"
        if meta is not None:
            cell.metadata["nbgrader"] = meta
        notebook.cells.append(cell)
    return notebook


@pytest.mark.parametrize(("cells", "message"), [
    ([("x = 1", None)], "nbgrader metadata"),
    ([("x = 1", {"grade_id": "a"}), ("y = 2", {"grade_id": "a"})], "unique grade_id"),
    ([("assert True", {"grade_id": "t", "grade": True})], "positive points"),
    ([("def f():\n    ### BEGIN SOLUTION\n    pass", {"grade_id": "a", "solution": True})],
     "has no"),
    ([("### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS", {"grade_id": "s"})], "outside a test"),
])
def test_release_rejects_a_malformed_source_naming_the_cell(cells, message):
    with pytest.raises(ValueError, match=message) as info:
        release_notebook(_lab(cells), "bad_lab")
    assert "bad_lab: cell" in str(info.value)


def test_repository_labs_equal_a_fresh_release_of_solutions(root, tmp_path):
    solutions = sorted((root / "solutions").glob("*.ipynb"))
    if not solutions:
        pytest.skip("solutions/ has no notebooks yet")
    release(root / "solutions", tmp_path)
    fresh = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert sorted(p.name for p in (root / "labs").glob("*.ipynb")) == fresh
    for name in fresh:
        assert (root / "labs" / name).read_bytes() == (tmp_path / name).read_bytes(), name
        leaked = _solution_lines(read_notebook(root / "solutions" / name)) & _lines(tmp_path / name)
        assert not leaked, (name, leaked)
        parse_lab(read_notebook(root / "solutions" / name), name)
