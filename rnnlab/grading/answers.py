"""What a test sees of the student: proxies for answer functions, and what their calls return.

In the checker process (:mod:`rnnlab.grading.checkproc`) each answer name a test uses is bound to
an :class:`AnswerProxy`. Calling it sends the arguments to the student's kernel as plain data
(:mod:`rnnlab.grading.remote`), through the grader, which runs the call under the test's
deadline. What comes back is an *envelope* (:func:`rnnlab.grading.remote.serve`) that
:func:`unwrap` turns into

* the returned value, as fresh built-in objects, tensors and arrays;
* the student's arguments after the call, written back into the test's own objects
  (:func:`mirror`), so that a check that an answer leaves its inputs unchanged sees an in-place
  change exactly as it would in one process;
* the forbidden calls the answer made (``forbidden_call``), its exception (the built-in
  exception of the same name, or :class:`StudentException`), or a :class:`GradingEvent`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from rnnlab.grading import remote

__all__ = ["GradingEvent", "StudentException", "UsesUnanswered", "AnswerProxy", "unwrap",
           "mirror", "BUILTIN_ERRORS"]


class GradingEvent(BaseException):
    """Raised into a test when the student's side failed; ``flag`` names what happened.

    A ``BaseException``, so a test's ``except Exception`` cannot swallow a timeout.
    """

    def __init__(self, flag: str, message: str):
        super().__init__(message)
        self.flag = flag


class StudentException(Exception):
    """An exception of the student's code whose type is not a built-in one."""


class UsesUnanswered(NotImplementedError):
    """The answer called is written, but it calls another answer of the lab that is not
    (``answer``, one of the lab's answer names): not implemented yet, but not this one."""

    def __init__(self, answer: str):
        super().__init__(f"uses {answer}, which is not implemented yet")
        self.answer = answer


BUILTIN_ERRORS = {cls.__name__: cls for cls in (
    ArithmeticError, AssertionError, AttributeError, IndexError, KeyError, LookupError,
    NameError, NotImplementedError, OverflowError, RecursionError, RuntimeError, TypeError,
    ValueError, ZeroDivisionError)}


def _student_error(error) -> BaseException:
    if not isinstance(error, dict):
        return GradingEvent("error", "the result is malformed")
    name, message = str(error.get("type", "")), str(error.get("message", ""))
    if error.get("memory") is True:
        return GradingEvent("memory", "ran out of memory")
    if name == "TypeError" and message.startswith("not plain data"):
        return GradingEvent("error", "returned something that is not plain data")
    builtin = BUILTIN_ERRORS.get(name)
    exc = builtin(message) if builtin else StudentException(message)
    if isinstance(exc, (NotImplementedError, NameError)) and isinstance(error.get("where"), str):
        exc.where = error["where"]
    return exc


def mirror(original, returned):
    """Make ``original`` equal to ``returned`` in place where it is mutable; return the result.

    Tensors are copied into (resized first if the answer resized them), lists and dicts
    updated element by element (what the answer appended or added is appended or added),
    tuples walked; an immutable value is replaced, so the caller stores what this returns.
    """
    import numpy
    import torch

    if isinstance(original, torch.Tensor) and isinstance(returned, torch.Tensor):
        with torch.no_grad():
            if original.shape != returned.shape:
                original.resize_(returned.shape)
            original.copy_(returned.to(original.dtype))
        return original
    if isinstance(original, numpy.ndarray) and isinstance(returned, numpy.ndarray):
        if original.shape != returned.shape:
            original.resize(returned.shape, refcheck=False)
        original[...] = returned
        return original
    if type(original) is list and type(returned) is list:
        common = min(len(original), len(returned))
        original[:] = [mirror(a, b) for a, b in zip(original, returned)] + returned[common:]
        return original
    if type(original) is dict and type(returned) is dict:
        for key in [k for k in original if k not in returned]:
            del original[key]
        for key, value in returned.items():
            original[key] = mirror(original[key], value) if key in original else value
        return original
    if type(original) is tuple and type(returned) is tuple and len(original) == len(returned):
        for a, b in zip(original, returned):
            mirror(a, b)
        return original
    return returned


def unwrap(text: str, args: list, kwargs: dict):
    """The value of a call's envelope ``text``; writes changed arguments back (:func:`mirror`).

    Raises:
        GradingEvent: ``forbidden_call`` (the answer called something the lab forbids),
            ``memory`` or ``error`` (a malformed or non-plain result, arguments turned into
            something that is not plain data).
        Exception: the student's own exception.
    """
    try:
        envelope = json.loads(text)
        if not isinstance(envelope, dict) or not ({"ok", "error"} & set(envelope)):
            raise ValueError("expected an object with ok or error")
    except (ValueError, RecursionError) as exc:
        raise GradingEvent("error", "the result is not plain data") from exc
    if "error" in envelope:
        raise _student_error(envelope["error"])
    if envelope.get("args") == "not plain data":
        raise GradingEvent("error", "changed an argument into something that is not plain data")
    try:
        value = remote.loads(envelope["ok"])
        if envelope.get("args") is not None:
            new_args, new_kwargs = remote.loads(envelope["args"])
            if len(new_args) != len(args) or set(new_kwargs) != set(kwargs):
                raise ValueError("the arguments came back with another layout")
            for original, after in zip(args, new_args):
                mirror(original, after)
            for key, after in new_kwargs.items():
                mirror(kwargs[key], after)
    except (ValueError, TypeError, RecursionError, RuntimeError) as exc:
        raise GradingEvent("error", "the result is not plain data") from exc
    calls = envelope.get("forbidden") or []
    if calls:
        names = ", ".join(sorted(str(c) for c in calls))[:300]
        raise GradingEvent("forbidden_call", f"called {names}, which this lab forbids here")
    return value


class AnswerProxy:
    """Stands for an answer function in a test: a call runs in the student's kernel.

    Args:
        name: the answer's name in the kernel.
        forbidden: dotted names of what the answer must not call (recorded in the kernel).
        send: sends a request to the kernel and returns the result envelope's text (raises
            :class:`GradingEvent` on a timeout, a dead kernel, …).
        events: the flags of what happened during this test; a call appends to it.
        answers: the lab's answer names: a ``NotImplementedError`` raised in another of them,
            or a ``NameError`` for one, is raised into the test as :class:`UsesUnanswered`.
    """

    def __init__(self, name: str, forbidden: tuple[str, ...], send: Callable[[dict], str],
                 events: list[str], answers: frozenset[str] = frozenset()):
        self._name, self._forbidden, self._send, self._events = name, forbidden, send, events
        self._answers = answers

    def __call__(self, *args, **kwargs):
        request = {"op": "call", "name": self._name, "args": remote.dumps(list(args)),
                   "kwargs": remote.dumps(kwargs), "forbidden": list(self._forbidden)}
        try:
            return unwrap(self._send(request), list(args), kwargs)
        except GradingEvent as event:
            self._events.append(event.flag)
            raise
        except (NotImplementedError, NameError) as exc:
            where = getattr(exc, "where", None)
            if where in self._answers and where != self._name:
                raise UsesUnanswered(where) from None
            raise

    def __repr__(self) -> str:
        return f"<answer {self._name} in the student's kernel>"
