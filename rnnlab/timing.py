"""Wall-clock times of a few variants of one computation, measured side by side.

On a shared machine a single timing says little: another process may take the core for a
while. :func:`interleaved_medians` makes the comparison robust in three ways:

* one *sample* of a variant is the fastest of ``calls`` back-to-back calls, because an
  interruption only ever adds time;
* the variants take turns, sample after sample, so that a burst of load hits all of them alike;
* the median of ``repeats`` samples is reported.

Ratios of these medians (variant / reference) are what a page or a benchmark should state.
With torch on one CPU thread, ``clock=time.thread_time`` counts only the CPU time of the calling
thread, which other processes cannot inflate by taking the core away mid-call: on a loaded
machine its ratios stay much closer to a quiet machine's than wall-clock ratios do. (With more
torch threads, or on a GPU, the work runs elsewhere and only the wall clock sees it.)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch

from rnnlab.checks import check_int, check_type

__all__ = ["interleaved_medians"]


def interleaved_medians(functions: Mapping[str, Callable[[], object]], *, repeats: int = 11,
                        calls: int = 3, device: torch.device | str | None = None,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """The median sample time of each function, in seconds: ``{name: seconds}``.

    ``functions``: ``{name: f}`` with ``f()`` the computation to time (its result is dropped);
    each is called once first to warm up, then ``repeats`` rounds take one sample of every
    function in turn, a sample being the fastest of ``calls`` back-to-back calls. ``device``:
    on a CUDA device the queue is synchronised before and after each call, so that the time
    covers the kernels and not only their launch. ``clock``: the timer (seconds as a float), as
    in :mod:`timeit`.
    """
    check_type("functions", functions, Mapping, "a mapping {name: callable}")
    if not functions:
        raise ValueError("functions: expected a non-empty mapping {name: callable}, got {}")
    bad = [name for name, f in functions.items() if not callable(f)]
    if bad:
        raise TypeError(f"functions: expected callables, got {bad[0]!r}: "
                        f"{type(functions[bad[0]]).__name__}")
    repeats, calls = check_int("repeats", repeats, 1), check_int("calls", calls, 1)
    cuda = device is not None and torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def seconds(f) -> float:
        sync()
        start = clock()
        f()
        sync()
        return clock() - start

    for f in functions.values():                                  # warm-up
        f()
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, f in functions.items():                         # variants take turns
            samples[name].append(min(seconds(f) for _ in range(calls)))
    return {name: statistics.median(s) for name, s in samples.items()}
