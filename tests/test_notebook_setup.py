"""rnnlab.notebook.setup seeds every RNG the pages use and returns the default device."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rnnlab.device import default_device
from rnnlab.notebook import setup


def test_setup_makes_torch_numpy_and_random_reproducible():
    setup(seed=3)
    first = (torch.rand(3), np.random.rand(3), random.random())
    setup(seed=3)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]
    setup(seed=4)
    assert not torch.equal(first[0], torch.rand(3))


def test_setup_returns_the_default_device(monkeypatch):
    monkeypatch.setenv("RNNLAB_DEVICE", "cpu")
    assert setup() == default_device() == torch.device("cpu")


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_setup_rejects_seeds_that_are_not_non_negative_ints(seed):
    with pytest.raises(ValueError, match="seed: expected a non-negative int"):
        setup(seed)


def test_setup_caps_torch_threads_and_can_leave_them_alone():
    before = torch.get_num_threads()
    try:
        setup(num_threads=1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        setup(num_threads=None)
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="num_threads: expected a positive int"):
            setup(num_threads=0)
    finally:
        torch.set_num_threads(before)


def test_setup_in_plain_python_starts_no_ipython_shell():
    import subprocess
    import sys

    code = ("import rnnlab.notebook as n; n.setup(); import sys; "
            "from IPython import get_ipython; print(get_ipython() is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
