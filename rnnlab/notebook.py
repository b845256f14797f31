"""What a book page needs around its computations: set-up, numbers for the prose, tables.

* ``device = rnnlab.notebook.setup(seed=0)`` replaces the block of seeds, print options and
  figure defaults that notebooks would otherwise paste into their first cell;
* :func:`glue` puts a computed number into the page's prose (myst-nb's ``{glue:text}`` role), so
  no number a reader sees is typed by hand;
* :func:`table` shows rows of results as a rendered table that fits the text column, instead of
  printed columns.

Numbers are formatted once, by :func:`format_number`: rounded to what the page states, with
exponents written ``1.3 × 10⁻¹⁸``. Rounded values keep the committed outputs identical from run
to run and between the CPU and GPU kernels, which nbval checks.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from rnnlab.checks import check_int, check_type
from rnnlab.device import default_device

__all__ = ["setup", "glue", "table", "format_number", "spread"]


def setup(seed: int = 0, num_threads: int | None = 1) -> torch.device:
    """Seed every RNG, set quiet print and figure defaults, return :func:`default_device`.

    Seeds Python's ``random``, NumPy's global RNG and torch (CPU and CUDA) with ``seed``; sets
    matplotlib to figures that fit the book's text column (6.4 in wide at 100 dpi, drawn as PNG
    at twice that resolution inside IPython, so they stay sharp); limits torch's printed
    precision so that a stray tensor in an output stays short and stable.

    ``num_threads`` (default 1) caps torch's intra-op CPU threads: the course's tensors are small,
    and on a 2-core machine a second thread costs more in contention than it gains (a chapter
    measured 33 s with 2 threads, 4.7 s with 1, under load). ``None`` leaves torch's default.
    """
    check_int("seed", seed, minimum=0)
    if num_threads is not None:
        check_int("num_threads", num_threads, minimum=1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    import matplotlib

    matplotlib.rcParams.update({
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 100,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "font.size": 10,
        "legend.fontsize": 9,
    })
    _png_figures_in_ipython()
    return default_device()


def _png_figures_in_ipython() -> None:
    """Ask a running IPython for sharp PNG figures ("retina": twice the pixels, displayed at the
    figure's size); in plain Python do nothing (and start no shell)."""
    import sys

    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    if get_ipython() is None:
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("retina")


_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def format_number(value, fmt: str = ".3g") -> str:
    """``format(value, fmt)`` with a readable exponent: ``1.3e-18`` -> ``1.3 × 10⁻¹⁸``.

    The spaces around ``×`` do not break, so a number never wraps inside a narrow table cell.

    ``value`` is a Python or NumPy number or a 0-d tensor; a string is returned unchanged.
    ``nan`` and ``inf`` are written as such; ``-0`` (a negative number rounded to zero) as 0.
    """
    if isinstance(value, str):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value: expected a number, got {type(value).__name__}")
    text = format(value, fmt)
    mantissa, e, exponent = text.partition("e")
    if e:
        power = str(int(exponent)).translate(_SUPERSCRIPTS)
        text = f"10{power}" if mantissa in ("1", "1.0") else f"{mantissa}\u00a0×\u00a010{power}"
    if text.startswith("-") and float(mantissa) == 0:
        text = text[1:]
    return text.replace("-", "−")


def spread(values, fmt: str = ".3g") -> str:
    """The median and range of a measurement over seeds: ``"12.5 (3.6 to 77)"``.

    How the book reports a claim about random networks or training runs (one value per seed).
    ``values``: a non-empty sequence of numbers (NaN is refused: say what failed instead).
    """
    import statistics

    numbers = [float(v.item() if hasattr(v, "item") else v) for v in values]
    if not numbers or any(n != n for n in numbers):
        raise ValueError(f"values: expected a non-empty sequence of numbers without NaN, "
                         f"got {values!r}")
    low, mid, high = min(numbers), statistics.median(numbers), max(numbers)
    return f"{format_number(mid, fmt)} ({format_number(low, fmt)} to {format_number(high, fmt)})"


def glue(name: str, value, fmt: str = ".3g"):
    """Make ``value`` citable in the page's prose as ``{glue:text}`name```; return ``value``.

    The number is stored as text formatted by :func:`format_number` with ``fmt`` — the
    rounding the prose states, so the stored output is stable across runs — and nothing is
    displayed. ``value`` may also be a string, glued as it is.
    """
    check_type("name", name, str, "an identifier such as 'peak_norm'")
    if not name.isidentifier():
        raise ValueError(f"name: expected an identifier such as 'peak_norm', got {name!r}")
    from myst_nb import glue as myst_glue

    myst_glue(name, format_number(value, fmt), display=False)
    return value


def table(rows, columns, fmt: str | dict[str, str] = ".3g"):
    """Rows of results as a Markdown table (rendered by the book and by JupyterLab).

    ``rows``: a sequence of sequences, one value per column; ``columns``: the header; ``fmt``:
    the format of every number, or ``{column: format}`` (columns not named get ``.3g``).
    Strings are shown as they are. Returns an ``IPython.display.Markdown`` to display.
    """
    from IPython.display import Markdown

    columns = [str(c) for c in columns]
    formats = fmt if isinstance(fmt, dict) else dict.fromkeys(columns, fmt)
    unknown = set(formats) - set(columns)
    if unknown:
        raise ValueError(f"fmt: expected formats for columns of {columns}, got {sorted(unknown)}")
    lines = ["| " + " | ".join(columns) + " |",                 # labels left, numbers right
             "|" + "|".join(":---" if k == 0 else "---:" for k in range(len(columns))) + "|"]
    for i, row in enumerate(rows):
        row = list(row)
        if len(row) != len(columns):
            raise ValueError(f"rows[{i}]: expected {len(columns)} values like columns, "
                             f"got {len(row)}")
        cells = [format_number(v, formats.get(c, ".3g")) for v, c in zip(row, columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return Markdown("\n".join(lines))
