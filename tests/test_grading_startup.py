"""The grader starts without torch: ``rnnlab/__init__`` imports its public names on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rnnlab
import rnnlab.models
import rnnlab.train


def test_grader_and_command_line_import_without_torch():
    code = ("import sys, rnnlab.cli, rnnlab.grading.batch, rnnlab.grading.report; "
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_public_names_resolve_to_their_modules_on_first_use():
    assert rnnlab.RNN is rnnlab.models.RNN
    assert rnnlab.fit is rnnlab.train.fit
    for name in rnnlab.__all__:
        assert getattr(rnnlab, name) is not None
    assert set(rnnlab.__all__) <= set(dir(rnnlab))


def test_every_submodule_is_reachable_after_a_bare_import():
    code = "import rnnlab; print(rnnlab.cells.__name__, rnnlab.jacobians.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["rnnlab.cells", "rnnlab.jacobians"]


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        rnnlab.no_such_name  # noqa: B018
