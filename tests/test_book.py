"""The book builds from its committed outputs without a single warning, and reads offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def book(root, tmp_path_factory) -> Path:
    """Build the book once with warnings as errors; return the HTML folder."""
    jb = shutil.which("jupyter-book")
    assert jb is not None, "jupyter-book is not installed: pip install -e '.[dev]'"
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run(
        [jb, "build", str(root), "--path-output", str(out), "-W", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"book build failed (warnings are errors):\n{log[-6000:]}"
    return out / "_build" / "html"


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



def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="needs chromium (apt-get install chromium)")
@pytest.mark.parametrize("page", ["intro"] + sorted(
    p.stem for p in (Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb")))
def test_equations_render_offline_in_a_browser(book, page, tmp_path):
    """Headless Chromium, no network: MathJax typesets every equation, none in error."""
    url = (book / "chapters" / f"{page}.html").as_uri()
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path}", "--virtual-time-budget=20000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    dom = result.stdout
    assert "</html>" in dom, f"chromium returned no page:\n{result.stderr[-2000:]}"
    typeset = dom.count("<mjx-container")
    assert typeset > 5, f"{page}: only {typeset} typeset equations; MathJax did not run"
    assert "<mjx-merror" not in dom, f"{page}: an equation failed to typeset"
