"""The grader's side of the checker process (:mod:`rnnlab.grading.checkproc`).

A :class:`Checker` starts the process on first use and keeps it for every student a grader
process grades (starting Python and torch once). Per lab it sends the set-up cells; per test it
sends the cell, then serves the test's calls into the student's kernel
(:meth:`KernelSession.request`) until the result comes back. Two clocks run: the kernel's
(the calls of one test share one cell's time, as before) and the checker's own — its work
between calls may also take one cell's time. Past it, or when the process dies (memory, a
crash), the process is killed, the test scores 0 with the flag ``error``, and the next test
gets a fresh process with the lab's set-up cells run again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from multiprocessing.connection import Connection

from rnnlab.grading.answers import GradingEvent
from rnnlab.grading.limits import MAX_RESULT_BYTES, Limits
from rnnlab.grading.notebook import LabCell
from rnnlab.grading.results import TestResult
from rnnlab.grading.session import KernelSession

__all__ = ["Checker", "SourceError", "TOO_LONG", "BROKE"]

TOO_LONG = "the checks of this test took too long on this answer"
BROKE = "the checks of this test could not finish on this answer"


class SourceError(RuntimeError):
    """An instructor set-up cell failed in the grader: a bug of the lab, not the student's."""


class _Broken(Exception):
    """The checker process died or took too long; it has been stopped."""

    def __init__(self, message: str):
        super().__init__(message)


class Checker:
    """A checker process with ``limits.memory`` bytes for its checks (see the module docs)."""

    def __init__(self, limits: Limits):
        if not isinstance(limits, Limits):
            raise TypeError(f"limits: expected Limits, got {type(limits).__name__}")
        self.limits = limits
        self.process: subprocess.Popen | None = None
        self._inbox: Connection | None = None
        self._outbox: Connection | None = None
        self._setup: list[list[str]] = []
        self._lab = ""

    def _start(self) -> None:
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        env = dict(os.environ, RNNLAB_DEVICE="cpu", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   MPLBACKEND="agg")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rnnlab.grading.checkproc", str(child_reads),
             str(child_writes), str(self.limits.memory)],
            pass_fds=(child_reads, child_writes), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(child_reads)
        os.close(child_writes)
        self._outbox = Connection(parent_writes, readable=False)
        self._inbox = Connection(parent_reads, writable=False)
        self._expect("started", time.monotonic() + self.limits.setup_timeout)

    def _send(self, message: dict) -> None:
        try:
            self._outbox.send_bytes(json.dumps(message).encode())
        except OSError as exc:
            self.close()
            raise _Broken(BROKE) from exc

    def _receive(self, deadline: float) -> dict:
        try:
            if not self._inbox.poll(max(0.0, deadline - time.monotonic())):
                self.close()
                raise _Broken(TOO_LONG)
            return json.loads(self._inbox.recv_bytes(maxlength=2 * MAX_RESULT_BYTES))
        except (EOFError, OSError, ValueError) as exc:
            self.close()
            raise _Broken(BROKE) from exc

    def _expect(self, op: str, deadline: float) -> dict:
        message = self._receive(deadline)
        if message.get("op") != op:
            raise SourceError(f"{self._lab}: {message.get('message') or message}")
        return message

    def _ready(self) -> None:
        """A live process that has run the current lab's set-up cells."""
        if self.process is not None and self.process.poll() is None:
            return
        self.close()
        self._start()
        self._send({"op": "lab", "setup": self._setup})
        self._expect("ready", time.monotonic() + self.limits.setup_timeout * (1 + len(self._setup)))

    def begin_lab(self, name: str) -> None:
        """Start a lab: a fresh namespace, every RNG seeded with 0."""
        self._lab, self._setup = name, []
        self._run({"op": "lab", "setup": []})

    def run_setup(self, grade_id: str, source: str) -> None:
        """Run the lab's next set-up cell in the checker's namespace.

        Raises:
            SourceError: the cell failed (the lab is broken for every student).
        """
        self._setup.append([grade_id, source])
        self._run({"op": "setup", "grade_id": grade_id, "source": source})

    def _run(self, message: dict) -> None:
        try:
            if self.process is None or self.process.poll() is not None:
                self._ready()                     # a fresh process replays every set-up cell
            else:
                self._send(message)
                self._expect("ready", time.monotonic() + self.limits.setup_timeout)
        except _Broken as exc:
            raise SourceError(f"{self._lab}: the set-up cells did not finish in the checker "
                              f"({exc})") from exc

    def run_test(self, cell: LabCell, answers: dict[str, tuple[str, ...]],
                 session: KernelSession) -> TestResult:
        """Grade one test cell; ``answers`` maps each answer name to its forbidden calls."""
        events: list[str] = []
        try:
            self._ready()
            self._send({"op": "test", "grade_id": cell.grade_id, "source": cell.source,
                        "answers": {k: list(v) for k, v in answers.items()}})
            budget, deadline = self.limits.cell_timeout, None
            while True:
                start = time.monotonic()
                message = self._receive(start + budget)
                budget -= time.monotonic() - start
                if message.get("op") == "result":
                    break
                if deadline is None:        # a kernel restart does not eat the test's time
                    session.ensure()
                    deadline = session.cell_deadline()
                try:
                    reply = {"ok": session.request(message["request"], deadline)}
                except GradingEvent as event:
                    events.append(event.flag)
                    reply = {"event": event.flag, "message": str(event)}
                self._send(reply)
        except _Broken as exc:
            return TestResult(cell.grade_id, 0.0, cell.points,
                              tuple(sorted(set(events) | {"error"})), str(exc))
        except BaseException:
            self.close()             # mid-test: its next message would answer the wrong request
            raise
        passed = message.get("passed") is True
        flags = tuple(sorted(set(events) | set(message.get("flags", ()))))
        return TestResult(cell.grade_id, cell.points if passed else 0.0, cell.points,
                          () if passed else flags, str(message.get("message", "")))

    def close(self) -> None:
        """Stop the process (if any)."""
        for connection in (self._inbox, self._outbox):
            if connection is not None:
                connection.close()
        self._inbox = self._outbox = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None
