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
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from rnnlab import notebook

__all__ = ["setup", "check", "close", "max_abs_diff", "failure_line", "NOT_IMPLEMENTED"]

NOT_IMPLEMENTED = "not implemented yet — write your answer above"
"""What a failing check says while an answer still raises ``NotImplementedError``."""

_MAX_MESSAGE = 300
_shell = None   # the interactive IPython shell setup() found running, if any


def setup(seed: int = 0) -> torch.device:
    """Set up a lab notebook: :func:`rnnlab.notebook.setup` plus readable check failures.

    Seeds every RNG with ``seed``, sets print and figure defaults and, when running inside an
    IPython shell (a Jupyter kernel), makes :func:`check` show a failed assertion or a missing
    answer as one line. Returns :func:`rnnlab.device.default_device` for the lab's tensors.
    """
    global _shell
    device = notebook.setup(seed=seed)
    _shell = _ipython_shell()
    return device


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
    if not isinstance(description, str):
        raise TypeError(f"description: expected a str, got {type(description).__name__}")
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
        return f"✗ {description}: {_one_line(str(exc))} — run the cell above that defines it"
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
