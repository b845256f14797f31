"""The book's notebooks follow the reader-facing conventions (CONTRIBUTING.md, "Writing a page").

Static checks of the committed notebooks in chapters/, fast (no kernel, no build): what a reader
would see is checked in a browser by tests/test_site.py; that a fresh run reproduces the outputs
by tests/test_notebooks.py (nbval).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
COLUMNS = 88                      # what fits the text column at 1280 px (_static/rnnlab.css)
HIDDEN = {"remove-input", "hide-input", "remove-cell"}
ASSERT = re.compile(r"^\s*assert\b", re.MULTILINE)
# A typed measurement: a decimal (3.14, .5), a number in scientific notation (1e-9, 2.4e+3), or
# "N × 10^k" / "N×" ratios. Parameters go in math ($\rho = 0.9$), results in {glue:text}.
TYPED = re.compile(r"(?<![\w.$])(\d+\.\d+|\d+(\.\d+)?[eE][-+]?\d+|\d+(\.\d+)?\s*[×x]\s*10\b"
                   r"|\d+(\.\d+)?\s*×)")


def _notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(path: Path):
    return [c for c in _notebook(path).cells if c.cell_type == "code"]


def _prose(markdown: str) -> str:
    """The text of a markdown cell a reader reads as prose: no code, math, roles or URLs."""
    text = re.sub(r"```.*?```", " ", markdown, flags=re.DOTALL)       # fenced code
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.DOTALL)          # display math
    text = re.sub(r"\$[^$]*\$", " ", text)                             # inline math
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", text)                    # {role}`...`
    text = re.sub(r"`[^`]*`", " ", text)                               # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)                           # link targets
    text = re.sub(r"^\s*:[\w-]+:.*$", " ", text, flags=re.MULTILINE)   # directive options
    text = re.sub(r"(?i)\b(sections?|§|eqs?\.|equations?|version|tables?|fig\.|figures?"
                  r"|algorithms?|theorems?|chapters?|appendix)\s*\(?\d+(\.\d+)*\)?",
                  " ", text)                                        # "section 2.3" of a paper
    return re.sub(r"<!--.*?-->", " ", text, flags=re.DOTALL)


pytestmark = pytest.mark.skipif(not CHAPTERS, reason="no chapter notebooks yet")
ids = [p.stem for p in CHAPTERS]


LABS = sorted(p for folder in ("labs", "solutions") for p in (ROOT / folder).glob("*.ipynb"))


# The labs are pages of the book too ("Labs" part), and solutions/ is what they are released from.
@pytest.mark.parametrize("path", CHAPTERS + LABS,
                         ids=ids + [f"{p.parent.name}/{p.stem}" for p in LABS])
def test_code_fits_the_column(path):
    long = [f"cell {i}: {line[:50]}… ({len(line)} columns)"
            for i, cell in enumerate(_code_cells(path))
            for line in cell.source.splitlines() if len(line) > COLUMNS]
    assert long == [], f"{path.name}: code lines over {COLUMNS} columns: {long}"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_text_outputs_fit_the_column_and_show_no_stderr(path):
    problems = []
    for i, cell in enumerate(_code_cells(path)):
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                if output.name == "stderr":
                    problems.append(f"cell {i}: stderr output {output.text[:60]!r}")
                text = output.text
            elif output.output_type in ("execute_result", "display_data"):
                text = output.get("data", {}).get("text/plain", "")
                if "image/png" in output.get("data", {}):
                    text = ""                              # "<Figure size ...>" is not shown
            else:
                problems.append(f"cell {i}: {output.output_type} output")
                continue
            problems += [f"cell {i}: {line[:50]}… ({len(line)} columns)"
                         for line in text.splitlines() if len(line) > COLUMNS]
    assert problems == [], f"{path.name}: {problems}"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_assertions_and_test_markers_are_hidden_from_readers(path):
    problems = []
    for i, cell in enumerate(_code_cells(path)):
        tags = set(cell.metadata.get("tags", []))
        if ASSERT.search(cell.source) and not tags & HIDDEN:
            problems.append(f"cell {i} asserts but is not tagged {sorted(HIDDEN)}")
        if "NBVAL" in cell.source:
            problems.append(f"cell {i} has an NBVAL comment (use the tag nbval-ignore-output)")
    assert problems == [], f"{path.name}: {problems}"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_every_figure_is_captioned_and_named(path):
    problems, names = [], []
    for i, cell in enumerate(_code_cells(path)):
        images = [o for o in cell.get("outputs", [])
                  if "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})]
        if not images:
            continue
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        if len(images) > 1:
            problems.append(f"cell {i} shows {len(images)} images (one figure per cell)")
        if not figure.get("caption") or not str(figure.get("name", "")).startswith("fig-"):
            problems.append(f"cell {i}: an image without mystnb.figure caption and name fig-…")
        names.append(figure.get("name"))
    duplicates = {n for n in names if names.count(n) > 1}
    assert problems == [] and not duplicates, f"{path.name}: {problems} {duplicates or ''}"


@pytest.mark.parametrize("path", CHAPTERS, ids=ids)
def test_prose_numbers_come_from_the_page(path):
    typed = []
    for i, cell in enumerate(_notebook(path).cells):
        if cell.cell_type == "markdown":
            prose = _prose(cell.source)
            typed += [f"cell {i}: {m.group(0)!r} in …{prose[max(m.start() - 30, 0):m.end()]!r}"
                      for m in TYPED.finditer(prose)]
    assert typed == [], (f"{path.name}: numbers typed into the prose; glue them from the "
                         f"page's outputs (rnnlab.notebook.glue) or write a parameter as math: "
                         f"{typed}")


NOTEBOOKS = sorted(p for folder in ("chapters", "solutions", "labs")
                   for p in (ROOT / folder).glob("*.ipynb"))
DEVICE_PINNED = [
    (re.compile(r"""device\s*=\s*["'](cpu|cuda)|torch\.device\(\s*["'](cpu|cuda)"""),
     "a hard-coded device (use rnnlab's default_device(), returned by setup())"),
    (re.compile(r"\.cuda\(|\.to\(\s*[\"']cuda"), "a hard-coded GPU (use default_device())"),
    (re.compile(r"(?<!\.cpu\(\))\.numpy\(\)"),
     ".numpy() on a tensor that may live on the GPU (.cpu().numpy(), .tolist() or .item())"),
]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[f"{p.parent.name}/{p.stem}" for p in NOTEBOOKS])
def test_notebook_runs_on_either_kernel(path):
    """The same notebook runs on the CPU kernel and on rnnlab-cuda: nothing pins a device."""
    found = [f"cell {i}: {why}: {line.strip()[:70]}"
             for i, cell in enumerate(_code_cells(path))
             for line in cell.source.splitlines()
             for pattern, why in DEVICE_PINNED if pattern.search(line.split("#")[0])]
    assert found == [], f"{path.name}: {found}"


MARKDOWN_PAGES = sorted((ROOT / "chapters").glob("*.md"))
FENCE = re.compile(r"^(`{3,}|~{3,})(.*?)\n(.*?)^\1\s*$", re.MULTILINE | re.DOTALL)


def _fenced_code(markdown: str) -> list[str]:
    """The lines of the fenced code blocks of a MyST text (not directives such as {math})."""
    return [line for fence in FENCE.finditer(markdown)
            if not fence.group(2).strip().startswith("{") or "code" in fence.group(2)
            for line in fence.group(3).splitlines()]


@pytest.mark.parametrize("path", MARKDOWN_PAGES + CHAPTERS,
                         ids=[p.name for p in MARKDOWN_PAGES + CHAPTERS])
def test_code_blocks_in_the_prose_fit_the_column(path):
    texts = ([path.read_text()] if path.suffix == ".md" else
             [c.source for c in _notebook(path).cells if c.cell_type == "markdown"])
    long = [f"{line[:50]}… ({len(line)} columns)"
            for text in texts for line in _fenced_code(text) if len(line) > COLUMNS]
    assert long == [], f"{path.name}: code-block lines over {COLUMNS} columns: {long}"
