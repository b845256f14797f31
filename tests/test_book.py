"""The book builds from its committed outputs without a single warning, and reads offline."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

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



def test_launch_buttons_are_off_by_default(book):
    page = (book / "chapters" / "05_clipping.html").read_text()
    assert "git-pull" not in page and "user-redirect" not in page


def test_jupyterhub_launch_button_opens_the_notebook_with_nbgitpuller(tmp_path):
    """An instructor's configuration (chapters/instructor_guide.md) builds, and the button of a
    notebook page pulls the repository into the hub and opens that notebook in JupyterLab."""
    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "_config.yml").read_text())
    config["repository"] = {"url": "https://github.com/example-org/rnnlab", "branch": "main"}
    config["launch_buttons"].update({"jupyterhub_url": "https://hub.example.edu",
                                     "notebook_interface": "jupyterlab"})
    config["sphinx"]["local_extensions"] = {"rnnlab_book": str(root / "_ext")}
    config["bibtex_bibfiles"] = [str(root / "references.bib")]
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(
        {"format": "jb-book", "root": "chapters/intro",
         "chapters": [{"file": "chapters/05_clipping"}]}))
    result = subprocess.run(
        ["jupyter-book", "build", str(root), "--config", str(tmp_path / "_config.yml"),
         "--toc", str(tmp_path / "_toc.yml"), "--path-output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    page = (tmp_path / "out" / "_build" / "html" / "chapters" / "05_clipping.html").read_text()
    links = re.findall(r'href="(https://hub\.example\.edu/hub/user-redirect/git-pull\?[^"]+)"',
                       page)
    assert links, "no JupyterHub launch button on a notebook page"
    query = parse_qs(urlsplit(links[0].replace("&amp;", "&")).query)
    assert query["repo"] == ["https://github.com/example-org/rnnlab"]
    assert query["branch"] == ["main"]
    assert query["urlpath"] == ["lab/tree/rnnlab/chapters/05_clipping.ipynb"]
