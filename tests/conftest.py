"""Shared fixtures of the test suite."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state."""
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def one_thread():
    """Every test computes on one torch thread (restored afterwards): the tests' tensors are
    small, and on 2 shared cores a second intra-op thread only adds contention. The one place
    that pins threads for the suite; a test that needs more sets them itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> Path:
    """Build the book once per session with warnings as errors; return the HTML folder.

    Shared by the build tests (tests/test_book.py) and the browser tests (tests/test_site.py).
    """
    jb = shutil.which("jupyter-book")
    assert jb is not None, "jupyter-book is not installed: pip install -e '.[dev]'"
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run(
        [jb, "build", str(ROOT), "--path-output", str(out), "-W", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"book build failed (warnings are errors):\n{log[-6000:]}"
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the system's), driven by Playwright: the browser tests of the site
    (tests/test_site.py) and of JupyterLab (tests/test_jupyterlab.py)."""
    if CHROMIUM is None:
        pytest.skip("needs chromium (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic"])
        try:
            yield chromium
        finally:
            chromium.close()
