"""rnnlab.notebook.setup seeds every RNG the pages use and returns the default device."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rnnlab.device import default_device
from rnnlab.notebook import format_number, glue, setup, spread, table


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


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError), ("0", TypeError),
                                         (True, TypeError)])
def test_setup_rejects_seeds_that_are_not_non_negative_ints(seed, error):
    with pytest.raises(error, match="^seed: expected an int >= 0, got "):
        setup(seed)


def test_setup_caps_torch_threads_and_can_leave_them_alone():
    before = torch.get_num_threads()
    try:
        setup(num_threads=1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        setup(num_threads=None)
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="^num_threads: expected an int >= 1, got 0$"):
            setup(num_threads=0)
        with pytest.raises(TypeError, match="^num_threads: expected an int >= 1, got float$"):
            setup(num_threads=2.0)
    finally:
        torch.set_num_threads(before)


def test_setup_in_plain_python_starts_no_ipython_shell(monkeypatch):
    # in this process, not a fresh interpreter (whose imports cost 5-15 s on 2 shared cores)
    import sys

    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    setup()                                            # IPython not loaded: it stays so
    assert "IPython" not in sys.modules
    monkeypatch.undo()
    from IPython.core.interactiveshell import InteractiveShell

    running = InteractiveShell.initialized()
    setup()                                            # IPython loaded: no shell started
    assert InteractiveShell.initialized() == running


# --------------------------------------------------------------------------------------------
# Numbers and tables for the prose
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "fmt", "text"), [
    (1.3e-18, ".2g", "1.3\u00a0×\u00a010⁻¹⁸"),
    (5751.2, ".0f", "5751"),
    (5751.2, ".3g", "5.75\u00a0×\u00a010³"),
    (1e10, ".3g", "10¹⁰"),
    (-2.5e-20, ".2g", "−2.5\u00a0×\u00a010⁻²⁰"),
    (-0.0004, ".2f", "0.00"),
    (-0.5, ".2f", "−0.50"),
    (float("inf"), ".3g", "inf"),
    (np.float32(0.25), ".2f", "0.25"),
    (torch.tensor(3.0), ".1f", "3.0"),
    (7, "d", "7"),
    ("as is", ".3g", "as is"),
])
def test_format_number_rounds_and_writes_exponents_as_powers_of_ten(value, fmt, text):
    assert format_number(value, fmt) == text


@pytest.mark.parametrize("value", [None, True, [1.0], torch.ones(2)])
def test_format_number_refuses_what_is_not_a_number(value):
    with pytest.raises(TypeError, match="^value: expected a number, got "):
        format_number(value)


def test_glue_stores_the_formatted_number_under_its_name(monkeypatch):
    import myst_nb

    stored = {}
    monkeypatch.setattr(myst_nb, "glue",
                        lambda name, value, display: stored.update({name: (value, display)}))
    assert glue("peak", 5751.23, ".0f") == 5751.23
    assert stored == {"peak": ("5751", False)}
    with pytest.raises(ValueError, match="name: expected an identifier"):
        glue("not a name", 1.0)
    with pytest.raises(TypeError, match="^name: expected an identifier such as .*, got int$"):
        glue(3, 1.0)


def test_table_renders_a_markdown_table_with_formatted_cells():
    shown = table([("tanh", 0.123456, 1e-9), ("relu", 2, float("nan"))],
                  ["model", "loss", "norm"], fmt={"loss": ".2f"})
    assert shown.data.splitlines() == [
        "| model | loss | norm |",
        "|:---|---:|---:|",
        "| tanh | 0.12 | 10⁻⁹ |",
        "| relu | 2.00 | nan |",
    ]
    with pytest.raises(ValueError, match=r"rows\[0\]: expected 2 values"):
        table([(1, 2, 3)], ["a", "b"])
    with pytest.raises(ValueError, match="fmt: expected formats for columns"):
        table([(1,)], ["a"], fmt={"b": ".1f"})


def test_spread_reports_the_median_and_the_range():
    assert spread([3.6, 77.0, 22.0, 29.0, 50.0], ".2g") == "29 (3.6 to 77)"
    assert spread(torch.tensor([1.0, 2.0]), ".2f") == "1.50 (1.00 to 2.00)"
    with pytest.raises(ValueError, match="values: expected a non-empty sequence"):
        spread([])
    with pytest.raises(ValueError, match="without NaN"):
        spread([1.0, float("nan")])
