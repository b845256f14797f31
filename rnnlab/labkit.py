"""What a lab notebook needs from rnnlab: one set-up call and readable checks.

The first code cell of every lab is::

    import torch, rnnlab
    from rnnlab.labkit import setup, check
    device = setup(seed=0)

and its test cells wrap each assertion in :func:`check`::

    with check("rnn_forward matches torch.nn.RNN on a random batch"):
        assert torch.allclose(rnn_forward(x, h0, W_ih, W_hh, b), reference, atol=1e-6), "..."

In a student's IPython kernel a passing check prints ``✓ <description>``; a failing one shows a
single line, ``✗ <description>: <assertion message>`` (or ``not implemented yet — write your
answer above`` while the answer still raises ``NotImplementedError``), instead of a long
traceback, and the exception still propagates so that *Run All* stops there. Outside IPython (the
grader's process, plain Python, pytest) a failing check re-raises the original exception unchanged
and prints nothing.

A lab also has cells that are no check: figures and experiments that call the student's
functions, and question cells whose released body is ``raise NotImplementedError()``. Before the
answers exist, :func:`setup` makes the kernel show the two errors such a cell raises as one line
too, whatever cell raises them:

* ``NotImplementedError()`` raised by a released stub (no message): ``✗ rnn_backward: not
  implemented yet — write your answer above``, naming the function whose answer is missing (the
  innermost one, so a figure that calls ``rnn_backward``, which calls an unanswered
  ``rnn_forward``, names ``rnn_forward``), or ``✗ this cell: not answered yet — …`` for a stub
  at a cell's top level;
* a ``NameError`` at a cell's top level (a cell run before the cell that defines the name):
  ``✗ name 'runs' is not defined — run the cell above that defines it``.

Every other error, and these two when raised inside a function of the student's (a typo to
debug) or with a message (a library's), keeps IPython's full traceback. The exception still
propagates, so *Run All* stops there and the grader still reads its type.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from rnnlab import notebook
from rnnlab.checks import check_type

__all__ = ["setup", "check", "close", "max_abs_diff", "failure_line", "NOT_IMPLEMENTED",
           "NOT_ANSWERED", "RUN_ABOVE"]

NOT_IMPLEMENTED = "not implemented yet — write your answer above"
"""What a failing check says while an answer still raises ``NotImplementedError``."""

NOT_ANSWERED = "not answered yet — replace raise NotImplementedError() with your answer"
"""What a question cell says while its released stub is still there."""

RUN_ABOVE = "run the cell above that defines it"
"""What a ``NameError`` adds: the name exists in the lab, in a cell not run yet."""

_MAX_MESSAGE = 300
_shell = None   # the interactive IPython shell setup() found running, if any


def setup(seed: int = 0) -> torch.device:
    """Set up a lab notebook: :func:`rnnlab.notebook.setup` plus readable check failures.

    Seeds every RNG with ``seed``, sets print and figure defaults and, when running inside an
    IPython shell (a Jupyter kernel), makes :func:`check` show a failed assertion or a missing
    answer as one line, and any cell a missing answer or name stops as one line (see the
    module's docstring). Returns :func:`rnnlab.device.default_device` for the lab's tensors.
    """
    global _shell
    device = notebook.setup(seed=seed)
    _shell = _ipython_shell()
    if _shell is not None:
        _shell.set_custom_exc((NotImplementedError, NameError), _show_uncaught)
    return device


def _show_uncaught(shell, etype, value, tb, tb_offset=None):
    """IPython's custom exception handler: one line for a missing answer, else the usual view.

    A cell stopped by a missing answer shows only that line: the figures it had begun to draw
    are closed before the inline backend would show them empty.
    """
    line = _uncaught_line(value)
    if line is not None:
        if not hasattr(value, "_render_traceback_"):
            value._render_traceback_ = lambda: [line]
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def _uncaught_line(exc: BaseException) -> str | None:
    """The one line for an error no check caught, or ``None`` to show its full traceback.

    Only a released stub's bare ``NotImplementedError()``, or a ``NameError`` raised by a
    cell's own top-level code, gets one line.
    """
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    top_level = code.co_name == "<module>"
    if type(exc) is NotImplementedError and not exc.args:
        if top_level:
            return f"✗ this cell: {NOT_ANSWERED}"
        return f"✗ {getattr(code, 'co_qualname', code.co_name)}: {NOT_IMPLEMENTED}"
    if isinstance(exc, NameError) and top_level:
        return f"✗ {_one_line(str(exc))} — {RUN_ABOVE}"
    return None


@contextmanager
def check(description: str) -> Iterator[None]:
    """Run the block as one named check; print ``✓ description`` when it passes.

    On ``AssertionError``, ``NotImplementedError`` or ``NameError`` (an answer not defined yet)
    inside an IPython shell where :func:`setup` ran, the exception is re-raised with a one-line
    rendering, ``✗ description: message``, that IPython shows in place of the traceback. Any
    other exception gets a one-line ``✗`` note followed by its full traceback (it is a bug to
    debug, not a wrong value). Outside IPython the original exception propagates unchanged and
    nothing is printed.

    Raises:
        TypeError: ``description`` is not a string.
        ValueError: ``description`` is empty.
    """
    check_type("description", description, str, "a str")
    if not description.strip():
        raise ValueError("description: expected a non-empty string, got an empty one")
    try:
        yield
    except (AssertionError, NotImplementedError, NameError) as exc:
        if _readable():
            line = failure_line(description, exc)
            exc._render_traceback_ = lambda: [line]     # IPython's hook for a custom traceback
        raise
    except Exception as exc:
        if _readable():
            print(f"✗ {description}: {_one_line(f'{type(exc).__name__}: {exc}')} "
                  "(traceback below)")
        raise
    print(f"✓ {description}")


def close(actual, expected, atol: float = 1e-8, rtol: float = 1e-6) -> bool:
    """Whether ``actual`` equals ``expected`` up to ``|a - e| <= atol + rtol |e|`` elementwise.

    Both sides may be tensors (any device, any floating dtype, with or without grad), NumPy
    arrays, numbers or nested lists of numbers; they are compared as float64 CPU tensors, so an
    answer computed on the GPU, or sent back by the grader as plain data, compares with a
    reference computed anywhere. Different shapes, or a NaN/inf where the other side differs,
    give ``False``.
    """
    a, e = _as_float64(actual), _as_float64(expected)
    return a.shape == e.shape and bool(torch.allclose(a, e, atol=atol, rtol=rtol))


def max_abs_diff(actual, expected) -> float:
    """``max |actual - expected|`` as a float (``inf`` when the shapes differ), for messages."""
    a, e = _as_float64(actual), _as_float64(expected)
    if a.shape != e.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    return float((a - e).abs().max())


def _as_float64(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float64)
    return torch.as_tensor(value, dtype=torch.float64)


def failure_line(description: str, exc: BaseException) -> str:
    """The one line a failed check shows: ``✗ description: message``."""
    if isinstance(exc, NotImplementedError):
        return f"✗ {description}: {NOT_IMPLEMENTED}"
    if isinstance(exc, NameError):
        return f"✗ {description}: {_one_line(str(exc))} — {RUN_ABOVE}"
    message = _one_line(str(exc)) or "assertion failed"
    return f"✗ {description}: {message}"


def _one_line(text: str) -> str:
    """Collapse whitespace (multi-line messages such as torch.testing's) and cap the length."""
    text = " ".join(text.split())
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return text


def _readable() -> bool:
    return _shell is not None and _ipython_shell() is _shell


def _ipython_shell():
    """The running interactive IPython shell (a Jupyter kernel or a terminal), or ``None``.

    IPython is never imported just to ask. A bare ``InteractiveShell`` does not count: plain
    Python gets one as a side effect of matplotlib_inline's ``set_matplotlib_formats``, and the
    grader's process must not be mistaken for a student's kernel.
    """
    if "IPython" not in sys.modules:
        return None
    from IPython.core.interactiveshell import InteractiveShell

    shell = sys.modules["IPython"].get_ipython()
    if shell is None or type(shell) is InteractiveShell:
        return None
    return shell
