"""rnnlab.timing: medians of best-of-``calls`` samples, variants interleaved, on a scripted clock.

A fake clock advances only when a timed function runs, by a scripted duration per call, so the
expected result can be worked out independently: the median over rounds of the minimum over the
calls of each round (statistics.median / min on the script itself).
"""

from __future__ import annotations

import statistics

import pytest

from rnnlab.timing import interleaved_medians


class ScriptedClock:
    """now() returns the fake time; each timed function adds its next scripted duration."""

    def __init__(self):
        self.now = 0.0
        self.order = []

    def __call__(self):
        return self.now

    def function(self, name, durations):
        durations = iter(durations)

        def run():
            self.now += next(durations)
            self.order.append(name)
        return run


def test_result_is_median_over_rounds_of_fastest_call_per_round():
    clock = ScriptedClock()
    repeats, calls = 5, 3
    # warm-up call first (a huge time that must be ignored), then repeats x calls durations
    script = {"fast": [9.0] + [1.0, 0.5, 2.0, 7.0, 0.6, 0.9, 0.7, 0.8, 3.0, 0.4, 5.0, 5.0,
                               0.55, 0.65, 0.75],
              "slow": [9.0] + [4.0, 3.0, 3.5, 3.2, 3.1, 9.0, 2.9, 3.3, 3.4, 3.0, 3.0, 3.0,
                               8.0, 2.5, 8.0]}
    functions = {name: clock.function(name, d) for name, d in script.items()}
    got = interleaved_medians(functions, repeats=repeats, calls=calls, clock=clock)
    for name, durations in script.items():
        timed = durations[1:]
        fastest = [min(timed[r * calls:(r + 1) * calls]) for r in range(repeats)]
        assert got[name] == pytest.approx(statistics.median(fastest))
    assert got == pytest.approx({"fast": 0.55, "slow": 3.0})


def test_variants_take_turns_after_one_warm_up_each():
    clock = ScriptedClock()
    functions = {n: clock.function(n, [1.0] * 10) for n in ("a", "b")}
    interleaved_medians(functions, repeats=2, calls=2, clock=clock)
    assert clock.order == ["a", "b", "a", "a", "b", "b", "a", "a", "b", "b"]


def test_real_clock_orders_a_longer_computation_after_a_shorter_one():
    def work(n):
        return lambda: sum(i * i for i in range(n))
    got = interleaved_medians({"short": work(2_000), "long": work(200_000)}, repeats=3)
    assert 0 < got["short"] < got["long"]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"functions": {}}, ValueError, "functions: expected"),
    ({"functions": [lambda: 0]}, TypeError, "functions: expected a mapping"),
    ({"functions": {"a": 1}}, TypeError, "functions: expected callables"),
    ({"functions": {"a": lambda: 0}, "repeats": 0}, ValueError, "repeats: expected"),
    ({"functions": {"a": lambda: 0}, "calls": 1.5}, TypeError, "calls: expected"),
])
def test_bad_arguments_are_refused_with_the_argument_named(kwargs, error, message):
    functions = kwargs.pop("functions")
    with pytest.raises(error, match=message):
        interleaved_medians(functions, **kwargs)
