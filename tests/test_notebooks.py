"""nbval: a fresh run of every chapter and solution notebook reproduces its committed outputs.

Each notebook runs in its own pytest subprocess so that one slow or failing page is reported on
its own. ``RNNLAB_NBVAL_KERNEL=rnnlab-cuda pytest tests/test_notebooks.py`` runs them on the
GPU kernel instead of the default ``python3``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    p.relative_to(ROOT).as_posix()
    for folder in ("chapters", "solutions")
    for p in (ROOT / folder).glob("*.ipynb")
)

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in chapters/ or solutions/ yet")
@pytest.mark.parametrize("notebook", NOTEBOOKS or ["<none>"])
def test_notebook_reproduces_its_outputs(notebook):
    command = [sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", "-q",
               "--rootdir", str(ROOT), notebook]
    kernel = os.environ.get("RNNLAB_NBVAL_KERNEL")
    if kernel:
        command += ["--nbval-kernel-name", kernel]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"nbval failed on {notebook}:\n{result.stdout[-8000:]}"
