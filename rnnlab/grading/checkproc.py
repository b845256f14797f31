"""The checker process: where a lab's set-up cells and test cells run, under the grader's limits.

``python -m rnnlab.grading.checkproc READ_FD WRITE_FD MEMORY`` is started by
:class:`rnnlab.grading.checker.Checker`, the grader's side, and talks to it in JSON messages
over two pipes (:mod:`multiprocessing.connection` framing):

* ``{"op": "lab", "setup": [[grade_id, source], …]}`` — seed every RNG with 0 and run the
  set-up cells in a fresh namespace; ``{"op": "setup", "grade_id", "source"}`` — run one more in
  it; both answer ``{"op": "ready"}`` or ``{"op": "setup_error", "message"}``;
* ``{"op": "test", "grade_id", "source", "answers": {name: [forbidden, …]}}`` — run a test cell
  in a copy of that namespace where each answer name the cell uses is bound to an
  :class:`~rnnlab.grading.answers.AnswerProxy`; every call of one becomes a
  ``{"op": "kernel", "request"}`` message, answered with the kernel's envelope
  (``{"ok": text}``) or ``{"event": flag, "message"}``; answer
  ``{"op": "result", "passed", "flags", "message"}``.

Its address space is limited to what it holds after start-up plus MEMORY bytes, so a test that
would build a huge matrix from a student's result fails with ``error`` here, and the grader
kills it when a test's own work takes longer than a cell may: whatever a student's answer makes
the checks do, the grader's own process is not touched. Nothing it prints goes anywhere.
"""

from __future__ import annotations

import ast
import json
import os
import random
import resource
import sys
from contextlib import contextmanager
from multiprocessing.connection import Connection

from rnnlab.grading.answers import AnswerProxy, GradingEvent, unwrap
from rnnlab.grading.limits import MAX_RESULT_BYTES
from rnnlab.grading.messages import failure_message

__all__ = ["main", "OUT_OF_MEMORY"]

OUT_OF_MEMORY = "the checks of this test ran out of memory on this answer"
_UNANSWERED = (AssertionError, NotImplementedError)


class _Unanswered:
    """An answer name the student's kernel does not define: any use is 'not implemented'."""

    def __init__(self, name: str):
        self._name = name

    def _missing(self, *args, **kwargs):
        raise NotImplementedError(f"{self._name} is not defined")

    __call__ = __eq__ = __ne__ = __bool__ = __len__ = __iter__ = __float__ = _missing
    __getattr__ = __getitem__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _missing


def _names_used(source: str) -> set[str]:
    try:
        return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    except SyntaxError:
        return set()


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


class _Channel:
    """The two pipes to the grader."""

    def __init__(self, read_fd: int, write_fd: int):
        self.inbox = Connection(read_fd, writable=False)
        self.outbox = Connection(write_fd, readable=False)

    def send(self, message: dict) -> None:
        self.outbox.send_bytes(json.dumps(message).encode())

    def receive(self) -> dict:
        return json.loads(self.inbox.recv_bytes(maxlength=2 * MAX_RESULT_BYTES))

    def kernel(self, request: dict) -> str:
        """Have the grader run ``request`` in the student's kernel; the envelope's text."""
        self.send({"op": "kernel", "request": request})
        reply = self.receive()
        if "event" in reply:
            raise GradingEvent(str(reply["event"]), str(reply.get("message", "")))
        return reply["ok"]


def _seeded() -> dict:
    """A fresh namespace, every RNG seeded with 0 (what a fresh notebook run would have)."""
    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return {"__name__": "__main__"}


def _setup(namespace: dict, sources: list[list[str]]) -> str:
    """Run set-up cells ``[[grade_id, source], …]`` in ``namespace``; ``""`` or what failed."""
    for grade_id, source in sources:
        try:
            exec(compile(source, f"<setup {grade_id}>", "exec"), namespace)
        except Exception as exc:
            return f"set-up cell {grade_id} failed: {type(exc).__name__}: {exc}"
    return ""


def _test(message: dict, setup: dict, channel: _Channel) -> dict:
    source, filename = message["source"], f"<test {message['grade_id']}>"
    events: list[str] = []
    failed_checks: list[tuple[str, BaseException]] = []

    @contextmanager
    def check(description: str):
        try:
            yield
        except BaseException as exc:
            failed_checks.append((description, exc))
            raise

    namespace = dict(setup, check=check)
    try:
        used = sorted(_names_used(source) & set(message["answers"]))
        described = unwrap(channel.kernel({"op": "describe", "names": used}), [], {}) \
            if used else {}
        for name in used:
            kind = described.get(name, {}).get("kind") if isinstance(described, dict) else None
            if kind == "callable":
                forbidden = tuple(message["answers"][name])
                namespace[name] = AnswerProxy(name, forbidden, channel.kernel, events,
                                              frozenset(message["answers"]))
            elif kind == "value":
                namespace[name] = described[name]["value"]
            else:
                namespace[name] = _Unanswered(name)
        exec(compile(source, filename, "exec"), namespace)
    except BaseException as exc:   # noqa: B036 — a GradingEvent is a BaseException on purpose
        if isinstance(exc, GradingEvent):
            events.append(exc.flag)
        elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        flags = set(events)
        if not flags and not isinstance(exc, _UNANSWERED):
            flags.add("error")
        text = OUT_OF_MEMORY if _out_of_memory(exc) else \
            failure_message(exc, source, filename, failed_checks)
        return {"op": "result", "passed": False, "flags": sorted(flags), "message": text}
    return {"op": "result", "passed": True, "flags": [], "message": ""}


def _limit_memory(extra: int) -> None:
    with open("/proc/self/status", encoding="ascii") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


def main(argv: list[str]) -> int:
    read_fd, write_fd, memory = (int(a) for a in argv[1:4])
    sink = open(os.devnull, "w")             # noqa: SIM115 — for the process's lifetime
    sys.stdout = sys.stderr = sink
    import numpy  # noqa: F401 — imported before the memory limit is measured
    import torch

    import rnnlab.labkit  # noqa: F401
    torch.set_num_threads(1)
    try:
        import matplotlib.pyplot  # noqa: F401 — the labs' set-up cells import it
    except ImportError:
        pass
    _limit_memory(memory)
    channel = _Channel(read_fd, write_fd)
    channel.send({"op": "started"})
    setup: dict = {}
    while True:
        try:
            message = channel.receive()
        except EOFError:
            return 0
        if message["op"] in ("lab", "setup"):
            if message["op"] == "lab":
                setup = _seeded()
                error = _setup(setup, message["setup"])
            else:
                error = _setup(setup, [[message["grade_id"], message["source"]]])
            channel.send({"op": "setup_error", "message": error} if error else {"op": "ready"})
        else:
            channel.send(_test(message, setup, channel))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
