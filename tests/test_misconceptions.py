"""The misconceptions appendix covers every misconception box and pastes only numbers that exist.

Static and fast (no kernel, no build): every ``(misc-NAME)=`` target in a chapter notebook is
linked from ``chapters/appendix_misconceptions.md``, every link there points at such a target,
and every number it pastes from a chapter (``{glue:text}`NN_x.ipynb::key:s```) is a glue output
stored in that notebook. The book build (``-W``) would also fail on a missing key; this test
names the box or key at once.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
APPENDIX = ROOT / "chapters" / "appendix_misconceptions.md"
TARGET = re.compile(r"^\((misc-[a-z0-9-]+)\)=\s*$", re.MULTILINE)
LINK = re.compile(r"\{ref\}`(?:[^`<]*<)?(misc-[a-z0-9-]+)>?`")
PASTE = re.compile(r"\{glue:text\}`([\w.-]+\.ipynb)::(\w+)(?::[^`]*)?`")


def _targets() -> dict[str, str]:
    found = {}
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                found.update((name, path.name) for name in TARGET.findall(cell.source))
    return found


def _glued(path: Path) -> set[str]:
    names = set()
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook", {})
            if "name" in scrapbook:
                names.add(scrapbook["name"])
    return names


def test_every_misconception_box_is_linked_from_the_appendix():
    linked = set(LINK.findall(APPENDIX.read_text()))
    missing = {name: page for name, page in _targets().items() if name not in linked}
    assert missing == {}, f"boxes the appendix does not link: {missing}"


def test_appendix_links_only_boxes_that_exist():
    dangling = set(LINK.findall(APPENDIX.read_text())) - set(_targets())
    assert dangling == set(), f"the appendix links misconception targets that no chapter has: " \
                              f"{sorted(dangling)}"


def test_appendix_pastes_only_numbers_its_chapters_glue():
    pastes = PASTE.findall(APPENDIX.read_text())
    assert pastes, "the appendix pastes no measured number"
    missing = [f"{notebook}::{key}" for notebook, key in pastes
               if not (ROOT / "chapters" / notebook).is_file()
               or key not in _glued(ROOT / "chapters" / notebook)]
    assert missing == [], f"pasted numbers that no chapter glues: {missing}"
