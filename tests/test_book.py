"""The book builds from its committed outputs without a single warning, and reads offline."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow


def test_book_builds_without_warnings(book):
    assert (book / "index.html").is_file()
    assert (book / "chapters" / "bibliography.html").is_file()


def test_book_loads_mathjax_from_the_site_not_a_cdn(book):
    page = (book / "chapters" / "intro.html").read_text()
    scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page, flags=re.IGNORECASE)
    assert scripts, "no MathJax script on the intro page"
    assert all("://" not in src for src in scripts), f"MathJax loaded from the network: {scripts}"
    local = (book / "chapters" / scripts[0].split("?")[0]).resolve()
    assert local.is_file(), f"MathJax script {scripts[0]} is not part of the site"

