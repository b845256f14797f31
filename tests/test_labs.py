"""The course's labs as published: their shortcut fences hold, and no solution reaches the site.

* Lab 1 asks for backpropagation through time by hand; ``rnnlab.bptt`` computes exactly that,
  so an answer that calls it must score 0 on every check that calls it (``forbidden_call``),
  while the same answer's other checks still score.
* The book shows the released labs (``labs/``) as pages and offers them for download; the
  instructor's ``solutions/`` must not reach the built site: no line that only a solution's
  answer or hidden-test region holds appears in any built HTML page or downloadable source.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from grading_kit import make_submission, write

from rnnlab.grading.batch import grade
from rnnlab.grading.labs import release_notebook
from rnnlab.grading.notebook import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    END_HIDDEN,
    END_SOLUTION,
    read_notebook,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
LAB1 = ROOT / "solutions" / "01_bptt_by_hand.ipynb"


def _answers(solution: nbformat.NotebookNode) -> dict[str, str]:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
            if c.metadata["nbgrader"].get("solution")}


# Appended to the solution's answer cell: the same function, but dL/dW_hh from rnnlab.bptt.
THROUGH_BPTT = """

_{name}_by_hand = {name}


def {name}(x, h0, W_ih, W_hh, b, y, *rest):
    import rnnlab.bptt
    grads = _{name}_by_hand(x, h0, W_ih, W_hh, b, y, *rest)
    states = rnn_forward(x, h0, W_ih, W_hh, b)
    library = rnnlab.bptt.bptt_gradients(x, states, W_hh, states[1:] - y)
    grads["W_hh"] = library["weight_hh"]
    return grads
"""


@pytest.mark.skipif(not LAB1.is_file(), reason="lab 1 is not in solutions/")
def test_lab1_answers_through_rnnlab_bptt_score_zero_as_forbidden(tmp_path):
    solution = read_notebook(LAB1)
    answers = _answers(solution)
    for name in ("rnn_backward", "fd_gradients"):
        answers[f"answer-{name}"] += THROUGH_BPTT.format(name=name)
    lab = release_notebook(solution, LAB1.stem)
    submissions = tmp_path / "submissions"
    write(submissions, "shortcut", LAB1.name, make_submission(lab, answers))
    results, _ = grade(submissions, ROOT / "solutions", jobs=1, tmp_root=tmp_path)
    [result] = [r for r in results if r.lab == LAB1.stem]
    scored = {t.test: (t.points, t.max_points, t.flags) for t in result.tests}
    calling = {"test-rnn_backward_params", "test-rnn_backward_states", "test-fd_gradients",
               "test-autograd_gradients"}       # the checks that call either answer
    for test, (points, max_points, flags) in scored.items():
        if test in calling:
            assert (points, flags) == (0, ("forbidden_call",)), (test, scored[test])
        else:
            assert points == max_points and flags == (), (test, scored[test])


def _secret_lines() -> set[str]:
    """Lines (stripped, 12 characters or more) found only inside solution or hidden-test regions
    of the solutions: nowhere else in them, in the released labs or in the chapters (not even
    as part of a longer line: a hidden test may repeat a visible line without its comment, and
    a chapter may derive what an answer computes)."""
    inside, outside = set(), set()
    for path in SOLUTIONS:
        for cell in read_notebook(path).cells:
            within = False
            for line in cell.source.splitlines():
                text = line.strip()
                if text in (BEGIN_SOLUTION, BEGIN_HIDDEN):
                    within = True
                elif text in (END_SOLUTION, END_HIDDEN):
                    within = False
                elif len(text) >= 12:
                    (inside if within else outside).add(text)
        released = ROOT / "labs" / path.name
        if released.is_file():
            outside |= {line.strip() for cell in read_notebook(released).cells
                        for line in cell.source.splitlines()}
    chapters = [cell.source for path in sorted((ROOT / "chapters").glob("*.ipynb"))
                for cell in read_notebook(path).cells]
    chapters += [path.read_text(encoding="utf-8") for path in (ROOT / "chapters").glob("*.md")]
    visible = "\n".join([*outside, *chapters])
    return {line for line in inside - outside if line not in visible}


def _site_text(book: Path) -> dict[str, str]:
    """Every built page and downloadable source, as text a reader could get (HTML unescaped
    roughly: tags removed, entities of quotes and brackets restored)."""
    texts = {}
    for path in book.rglob("*"):
        if path.suffix not in (".html", ".ipynb", ".md", ".txt", ".js") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".html":
            text = re.sub(r"<[^>]+>", "", text)
            for entity, char in (("&quot;", '"'), ("&#39;", "'"), ("&lt;", "<"),
                                 ("&gt;", ">"), ("&amp;", "&")):
                text = text.replace(entity, char)
        texts[str(path.relative_to(book))] = text
    return texts


@pytest.mark.skipif(not SOLUTIONS, reason="solutions/ has no notebooks yet")
def test_no_solution_text_reaches_the_built_site(book):
    secrets = _secret_lines()
    assert len(secrets) > 50, f"too few solution lines to make the check meaningful: {secrets}"
    texts = _site_text(book)
    labs = [name for name in texts if name.startswith("labs/") and name.endswith(".html")]
    assert len(labs) == len(SOLUTIONS), f"lab pages in the site: {labs}"
    assert not any(name.startswith("solutions/") or "/solutions/" in name for name in texts)
    leaks = sorted(f"{name}: {line}" for name, text in texts.items()
                   for line in secrets if line in text)
    assert leaks == [], f"solution text in the built site: {leaks[:10]}"
