"""Shared fixtures of the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from the same RNG state."""
    torch.manual_seed(0)
    yield
