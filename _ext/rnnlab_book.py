"""Local Sphinx extension of the rnnlab book (listed in ``_config.yml``, ``sphinx:
local_extensions``): what the site needs beyond Jupyter Book's defaults.

* Bibliography labels in the author–year form the text cites ("Pascanu et al., 2013"), not
  pybtex's alpha labels ("[PMB13]"), so a reader finds in the list what the text named.
* A backport of Sphinx's fix for inline scripts written twice (sphinx-doc/sphinx#13402, released
  in Sphinx 8.2; Jupyter Book 1 pins Sphinx < 8): ``Sphinx.add_js_file(None, body=...)`` after
  the builder exists stored the script under ``None`` while ``init_js_files`` re-added it under
  ``""``, so sphinx-thebe's ``const THEBE_JS_URL`` was declared twice on every page (a
  SyntaxError in the console).
"""

from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle as AuthorYearTitleSorting


def _surname(person) -> str:
    return " ".join(person.prelast_names + person.last_names).replace("{", "").replace("}", "")


class AuthorYearLabelStyle(BaseLabelStyle):
    """``Hochreiter & Schmidhuber, 1997``, ``Pascanu et al., 2013``; ``2013a``/``2013b`` when
    two entries would get the same label."""

    def _label(self, entry) -> str:
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        if not people:
            names = entry.fields.get("organization", entry.key)
        elif len(people) == 1:
            names = _surname(people[0])
        elif len(people) == 2:
            names = f"{_surname(people[0])} & {_surname(people[1])}"
        else:
            names = f"{_surname(people[0])} et al."
        return f"{names}, {entry.fields.get('year', 'n.d.')}"

    def format_labels(self, sorted_entries):
        labels = [self._label(entry) for entry in sorted_entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            yield label


class AuthorYearStyle(UnsrtStyle):
    """unsrt's entries, sorted by author and year, labelled by :class:`AuthorYearLabelStyle`."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = AuthorYearTitleSorting


def _single_inline_scripts(app) -> None:
    """Store ``add_js_file(None, ...)`` under ``""`` as ``init_js_files`` does (Sphinx #13402)."""
    builder = app.builder
    add = getattr(builder, "add_js_file", None)
    if add is None:
        return

    def add_js_file(filename, *args, **kwargs):
        return add("" if filename is None else filename, *args, **kwargs)

    builder.add_js_file = add_js_file


def setup(app):
    register_plugin("pybtex.style.formatting", "rnnlab_author_year", AuthorYearStyle)
    app.connect("builder-inited", _single_inline_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
