"""Which students handed in (nearly) the same answers: a signal for a human, never a penalty.

For each lab, each student's answer cells are reduced to what they wrote themselves:

1. tokens (Python's :mod:`tokenize`; a cell that does not tokenize is split into words and
   symbols): comments, line breaks and indentation dropped, so reformatting changes nothing;
2. identifiers renamed in order of first appearance (``v0``, ``v1``, …) within each cell,
   except keywords, built-ins, attributes and the names the released lab defines or imports
   (``torch``, ``sigmoid``, set-up variables), so renaming parameters and variables changes
   nothing;
3. the set of token :data:`N`-grams, tagged with the cell, *less* the n-grams of the released
   cell (code every student was given) and the n-grams that more than ``common`` of the class
   (and at least three students) share — the solution, or the answer everyone finds.

Two students' score on a lab is the Jaccard index of their sets, ``|A ∩ B| / |A ∪ B|``, in
[0, 1]; pairs at or above ``threshold`` are reported (a student with fewer than ``min_grams``
n-grams of their own is left out: a two-line answer cannot tell copying from coincidence).
Identical answers that only a few students have score 1; an answer identical to the solution
scores nothing when many students have it. Nothing here changes a grade.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import re
import token
import tokenize
from itertools import combinations
from pathlib import Path

from rnnlab.grading.labs import lab_paths, release_source
from rnnlab.grading.notebook import (
    LabNotebook,
    defined_names,
    parse_lab,
    read_notebook,
    submitted_cells,
)
from rnnlab.grading.report import write_csv
from rnnlab.grading.submissions import read_submission, students

__all__ = ["N", "tokens", "answer_grams", "similar_pairs", "write_similarity",
           "SIMILARITY_HEADER"]

N = 5
SIMILARITY_HEADER = ("lab", "student_a", "student_b", "score")
_SKIP = {token.COMMENT, token.NL, token.NEWLINE, token.INDENT, token.DEDENT, token.ENCODING,
         token.ENDMARKER}
_FALLBACK = re.compile(r"\w+|[^\w\s]")
_KEEP = set(keyword.kwlist) | set(dir(builtins))


def _raw_tokens(source: str) -> list[tuple[int, str]]:
    try:
        return [(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)
                if t.type not in _SKIP]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [(token.NAME if w[0].isalpha() or w[0] == "_" else token.OP, w)
                for w in _FALLBACK.findall(source)]


def tokens(source: str, keep: set[str] = frozenset()) -> list[str]:
    """``source`` as normalised tokens (see the module docstring, steps 1 and 2)."""
    out: list[str] = []
    names: dict[str, str] = {}
    previous = ""
    for kind, text in _raw_tokens(source):
        if kind == token.NAME and text not in _KEEP and text not in keep and previous != ".":
            text = names.setdefault(text, f"v{len(names)}")
        out.append(text)
        previous = text
    return out


def _grams(words: list[str], tag: str) -> set[tuple[str, ...]]:
    return {(tag, *words[i:i + N]) for i in range(len(words) - N + 1)}


def _lab_names(lab: LabNotebook) -> set[str]:
    """The names the released lab defines at top level or imports (``torch``, ``sigmoid``,
    set-up variables): fixed by the lab, not chosen by the student. Parameters and local
    variables are not among them, so renaming those changes nothing."""
    names: set[str] = set()
    for cell in lab.cells:
        if cell.cell_type != "code" or cell.kind not in ("setup", "answer"):
            continue
        source = release_source(cell.source)
        names |= set(defined_names(source))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def answer_grams(lab: LabNotebook, notebook) -> set[tuple[str, ...]]:
    """The n-grams of one student's answers to ``lab`` that the released lab does not hold."""
    keep = _lab_names(lab)
    submitted = submitted_cells(notebook)
    grams: set[tuple[str, ...]] = set()
    for cell in lab.cells:
        if cell.kind != "answer" or cell.grade_id not in submitted:
            continue
        given = _grams(tokens(release_source(cell.source, cell.cell_type), keep), cell.grade_id)
        grams |= _grams(tokens(submitted[cell.grade_id].source, keep), cell.grade_id) - given
    return grams


def similar_pairs(submissions: str | Path, source: str | Path, threshold: float = 0.8,
                  common: float = 0.25, min_grams: int = 10
                  ) -> list[tuple[str, str, str, float]]:
    """``(lab, student_a, student_b, score)`` for each pair at or above ``threshold``, sorted by
    lab, then score (highest first), then names (see the module docstring)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold: expected a number in (0, 1], got {threshold!r}")
    if not 0.0 < common <= 1.0:
        raise ValueError(f"common: expected a fraction in (0, 1], got {common!r}")
    names = students(submissions)
    found = []
    for path in lab_paths(source):
        lab = parse_lab(read_notebook(path), path.stem)
        sets: dict[str, set[tuple[str, ...]]] = {}
        for student in names:
            notebook, problem = read_submission(Path(submissions) / student, path.name)
            if problem is None:
                sets[student] = answer_grams(lab, notebook)
        counts: dict[tuple[str, ...], int] = {}
        for grams in sets.values():
            for gram in grams:
                counts[gram] = counts.get(gram, 0) + 1
        limit = max(2, common * len(sets))
        own = {s: {g for g in grams if counts[g] <= limit} for s, grams in sets.items()}
        own = {s: grams for s, grams in own.items() if len(grams) >= min_grams}
        rows = []
        for a, b in combinations(sorted(own), 2):
            union = len(own[a] | own[b])
            score = len(own[a] & own[b]) / union if union else 0.0
            if score >= threshold:
                rows.append((lab.name, a, b, round(score, 3)))
        found += sorted(rows, key=lambda r: (-r[3], r[1], r[2]))
    return found


def write_similarity(rows: list[tuple[str, str, str, float]], path: str | Path) -> Path:
    """Write the pairs as CSV with :data:`SIMILARITY_HEADER` (LF line ends, UTF-8)."""
    return write_csv(path, SIMILARITY_HEADER, rows)
