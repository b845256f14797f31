"""The code base stays ruff-clean (config in pyproject.toml), notebooks included."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def test_ruff_finds_nothing(root):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed: pip install -e '.[dev]'")
    result = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:]
