"""rnnlab.labkit: the set-up call and the readable checks of the lab notebooks.

Outside IPython (here, and in the grader's process) a failing check must re-raise the original
exception untouched; inside a real Jupyter kernel it must show one line and still stop Run All.
"""

from __future__ import annotations

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from rnnlab import labkit
from rnnlab.labkit import (
    NOT_ANSWERED,
    NOT_IMPLEMENTED,
    RUN_ABOVE,
    check,
    close,
    failure_line,
    max_abs_diff,
    setup,
)


def test_setup_returns_default_device_and_seeds_torch():
    device = setup(seed=3)
    first = torch.rand(3)
    setup(seed=3)
    assert torch.equal(first, torch.rand(3))
    assert isinstance(device, torch.device)
    assert device == labkit.notebook.default_device()


def test_setup_outside_ipython_leaves_failures_untouched():
    setup(seed=0)
    assert not labkit._readable()


def test_passing_check_prints_tick_line(capsys):
    with check("two plus two"):
        assert 2 + 2 == 4
    assert capsys.readouterr().out == "✓ two plus two\n"


def test_failing_check_reraises_same_assertion_unchanged_outside_ipython(capsys):
    setup(seed=0)
    original = AssertionError("off by one")
    with pytest.raises(AssertionError) as info:
        with check("counts"):
            raise original
    assert info.value is original
    assert info.value.args == ("off by one",)
    assert not hasattr(info.value, "_render_traceback_")
    assert capsys.readouterr().out == ""


def test_failing_check_reraises_not_implemented_unchanged_outside_ipython(capsys):
    with pytest.raises(NotImplementedError) as info:
        with check("answer exists"):
            raise NotImplementedError()
    assert type(info.value) is NotImplementedError
    assert not hasattr(info.value, "_render_traceback_")
    assert capsys.readouterr().out == ""


def test_other_errors_propagate_unchanged(capsys):
    with pytest.raises(TypeError, match="bad shape"):
        with check("shapes"):
            raise TypeError("bad shape")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("bad, error", [(3, TypeError), ("  ", ValueError)])
def test_check_rejects_bad_description(bad, error):
    with pytest.raises(error, match="description"):
        with check(bad):
            pass


def test_failure_line_names_description_and_message():
    assert failure_line("grads", AssertionError("W_hh wrong")) == "✗ grads: W_hh wrong"
    assert failure_line("grads", AssertionError()) == "✗ grads: assertion failed"
    assert failure_line("grads", NotImplementedError()) == f"✗ grads: {NOT_IMPLEMENTED}"
    assert failure_line("q1", NameError("name 'answer_q1' is not defined")) == (
        "✗ q1: name 'answer_q1' is not defined — run the cell above that defines it")


def test_failure_line_is_one_line_even_for_multiline_messages():
    try:
        torch.testing.assert_close(torch.zeros(4), torch.ones(4))
    except AssertionError as exc:
        line = failure_line("close", exc)
    assert "\n" not in line
    assert line.startswith("✗ close: Tensor-likes are not close!")
    assert len(failure_line("x", AssertionError("y" * 10_000))) < 320


def test_close_compares_across_dtypes_grad_and_plain_data():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert close(x.float(), x)
    assert close(x.tolist(), x)
    assert close(x.detach().numpy(), x * (1 + 1e-9))
    assert close(2.0, torch.tensor(2.0))


def test_close_rejects_wrong_values_shapes_and_nan():
    x = torch.randn(3, 4, dtype=torch.float64)
    assert not close(x + 1e-4, x)
    assert close(x + 1e-4, x, atol=1e-3)
    assert not close(x.T, x)
    assert not close(x[:2], x)
    y = x.clone()
    y[0, 0] = float("nan")
    assert not close(y, x)


def test_max_abs_diff_is_the_largest_elementwise_gap():
    x = torch.zeros(2, 3)
    y = x.clone()
    y[1, 2] = -0.25
    assert max_abs_diff(y, x) == 0.25
    assert max_abs_diff(x[:1], x) == float("inf")
    assert max_abs_diff([], []) == 0.0


def _raised(source: str) -> BaseException:
    """The exception ``source`` raises when run as a module (a cell's top level is one)."""
    try:
        exec(compile(source, "<cell>", "exec"), {})
    except BaseException as exc:                    # whatever the cell raised
        return exc
    raise AssertionError(f"{source!r} raised nothing")


def test_uncaught_stub_names_the_innermost_unanswered_function():
    exc = _raised("def rnn_forward():\n    raise NotImplementedError()\n"
                  "def rnn_backward():\n    return rnn_forward()\nrnn_backward()")
    assert labkit._uncaught_line(exc) == f"✗ rnn_forward: {NOT_IMPLEMENTED}"


def test_uncaught_stub_at_a_cells_top_level_asks_for_the_answer_there():
    exc = _raised("# One letter per answer\nraise NotImplementedError()")
    assert labkit._uncaught_line(exc) == f"✗ this cell: {NOT_ANSWERED}"


def test_uncaught_name_error_at_top_level_is_one_line():
    exc = _raised("for name in runs:\n    pass")
    assert labkit._uncaught_line(exc) == f"✗ name 'runs' is not defined — {RUN_ABOVE}"


@pytest.mark.parametrize("source", [
    "def f():\n    return undefined_name\nf()",               # a typo inside a function
    "raise NotImplementedError('aten::foo is not supported on this device')",   # a library's
    "assert 1 == 2",
    "{}['key']",
])
def test_uncaught_bugs_keep_their_traceback(source):
    assert labkit._uncaught_line(_raised(source)) is None


def test_uncaught_without_traceback_keeps_the_default_view():
    assert labkit._uncaught_line(NotImplementedError()) is None


def _run_in_kernel(cells: list[str]) -> list:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True).execute()
    return nb.cells


def _text(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append("\n".join(out.traceback))
    return "".join(parts)


@pytest.mark.slow
def test_in_a_kernel_failures_show_one_line_and_stop_run_all():
    cells = _run_in_kernel([
        "from rnnlab.labkit import setup, check",
        'with check("before setup"):\n    assert False, "boom"',
        "device = setup(seed=0)",
        'with check("passes"):\n    assert True',
        'with check("wrong value"):\n    assert 1 == 2, "expected 2, got 1"',
        'def f():\n    raise NotImplementedError()\nwith check("answer f"):\n    f()',
        'assert 1 == 2, "plain assert outside check"',
        'with check("crashes"):\n    {}["missing"]',
        'with check("question"):\n    assert answer_q == "a"',
    ])
    # before setup: still an error (Run All stops), with IPython's usual rendering
    before = [out for out in cells[1].outputs if out.output_type == "error"]
    assert len(before) == 1 and before[0].evalue == "boom" and len(before[0].traceback) > 1
    assert _text(cells[3]) == "✓ passes\n"
    wrong = [out for out in cells[4].outputs if out.output_type == "error"]
    assert len(wrong) == 1 and wrong[0].ename == "AssertionError"
    assert wrong[0].traceback == ["✗ wrong value: expected 2, got 1"]
    assert _text(cells[5]) == f"✗ answer f: {NOT_IMPLEMENTED}"
    # an assert outside any check keeps IPython's full traceback
    assert "plain assert outside check" in _text(cells[6])
    assert len(cells[6].outputs[-1].traceback) > 1
    # a crash inside a check: a one-line note, then the full traceback to debug
    crash = _text(cells[7])
    assert crash.startswith("✗ crashes: KeyError: 'missing' (traceback below)\n")
    assert "KeyError" in crash.split("\n", 1)[1]
    # an answer that was never defined: one line too
    assert _text(cells[8]) == ("✗ question: name 'answer_q' is not defined — run the cell above "
                               "that defines it")


@pytest.mark.slow
def test_in_a_kernel_cells_stopped_by_a_missing_answer_show_one_line():
    cells = _run_in_kernel([
        "runs",
        "from rnnlab.labkit import setup\ndevice = setup(seed=0)",
        "# a question cell as released\nraise NotImplementedError()",
        "def rnn_forward():\n    raise NotImplementedError()\n"
        "def rnn_backward():\n    return rnn_forward()",
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nprint('drawing')\n"
        "ax.plot(rnn_backward())\nplt.show()",
        "for name in runs:\n    pass",
        "def f():\n    return undefined_name\nf()",
        "raise NotImplementedError('not supported on this device')",
    ])
    errors = [[out for out in cell.outputs if out.output_type == "error"] for cell in cells]
    # before setup(): IPython's usual traceback
    assert len(errors[0]) == 1 and len(errors[0][0].traceback) > 1
    # the error keeps its type (Run All stops; the grader reads ename)
    assert [(e.ename, e.traceback) for e in errors[2]] == [
        ("NotImplementedError", [f"✗ this cell: {NOT_ANSWERED}"])]
    assert [(e.ename, e.traceback) for e in errors[4]] == [
        ("NotImplementedError", [f"✗ rnn_forward: {NOT_IMPLEMENTED}"])]
    # what the cell printed before stays; the half-drawn figure is not shown
    assert [out.output_type for out in cells[4].outputs] == ["stream", "error"]
    assert [(e.ename, e.traceback) for e in errors[5]] == [
        ("NameError", [f"✗ name 'runs' is not defined — {RUN_ABOVE}"])]
    # bugs to debug keep the full traceback
    for index in (6, 7):
        assert len(errors[index]) == 1 and len(errors[index][0].traceback) > 1
