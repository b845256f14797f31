"""A grading session: one student's kernel, reused lab after lab, restarted when code kills it.

One session serves all the labs of one student, in sequence (:meth:`KernelSession.begin_lab`
starts the next). Within a lab it executes the kernel-side cells (set-up and answer cells) in
order and remembers them. When a cell or a proxied call times out or the kernel dies, the kernel
is killed and the event recorded; the next request starts a fresh kernel in a fresh sandbox and
replays the lab's remembered cells, except the ones that timed out or killed a kernel, so the
answers after a hostile one are still graded. After :data:`MAX_RESTARTS` restarts, or once the
lab's wall clock is spent, every further request of that lab fails at once.

Between labs a live kernel is reset (:data:`RESET`: the user namespace is emptied, the global
state a lab may change is put back, processes the lab started are killed); if the reset fails or
the kernel is dead, the next lab starts a fresh kernel in a fresh sandbox, without a flag and
without counting a restart. Reusing the kernel saves starting Python, ipykernel, torch and
matplotlib once per lab; it cannot help a student, whose labs run only their own code. With a
:class:`~rnnlab.grading.template.KernelTemplate` every kernel (first, restarted, or after a
failed reset) is forked from the template, which has imported those already.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid

from rnnlab.grading.answers import GradingEvent
from rnnlab.grading.kernel import Outcome, StudentKernel
from rnnlab.grading.limits import MAX_RESULT_BYTES, Limits
from rnnlab.grading.sandbox import Sandbox
from rnnlab.grading.template import KernelTemplate

__all__ = ["KernelSession", "MAX_RESTARTS", "RESET", "flag_of"]

MAX_RESTARTS = 3
RESET = "__import__('rnnlab.grading.remote', fromlist=['reset']).reset(get_ipython())"
"""What a reused kernel runs between two labs (:func:`rnnlab.grading.remote.reset`)."""


def flag_of(outcome: Outcome) -> str | None:
    """The CSV flag an execution outcome deserves (``None`` for ok or an unanswered cell)."""
    if outcome.status == "timeout":
        return "timeout"
    if outcome.status == "died":
        return "kernel_died"
    if outcome.status == "memory":
        return "memory"
    if outcome.status == "error":
        if outcome.memory:
            return "memory"
        return None if outcome.ename == "NotImplementedError" else "error"
    return None


class KernelSession:
    """The kernel side of grading one student's labs (see the module docstring).

    Args:
        limits: time and memory limits.
        isolated: run kernels under bwrap.
        threads: CPU threads of the kernel.
        cpus: CPUs to pin the kernel to where there are no control groups (``None``: any).
        tmp_root: where the sandboxes' private directories are made (``None``: the system's
            temporary directory).
        template: fork each kernel from this :class:`KernelTemplate` (its sandbox, emptied
            between kernels) instead of starting one in a fresh sandbox; ``isolated``,
            ``threads``, ``cpus`` and ``tmp_root`` are then the template's.
    """

    def __init__(self, limits: Limits, isolated: bool, threads: int = 1,
                 cpus: list[int] | None = None, tmp_root: str | None = None,
                 template: KernelTemplate | None = None):
        self.limits = limits
        self.template = template
        self.isolated = isolated
        self.threads = threads
        self.cpus = cpus
        self.tmp_root = tmp_root
        self.kernel: StudentKernel | None = None
        self.sandbox: Sandbox | None = None
        self.starts = 0               # kernels started, for all labs together
        self._dirty = False           # the live kernel has run code of a lab
        self._new_lab()

    def _new_lab(self) -> None:
        self.deadline = time.monotonic() + self.limits.notebook_timeout
        self.history: list[tuple[str, bool]] = []
        self.restarts = 0
        self.broken: str | None = None

    def begin_lab(self) -> None:
        """Start the next lab: a new wall clock, no history, an empty namespace.

        A live kernel that ran a previous lab is reset (:data:`RESET`) and its stray processes
        killed; when that fails, or the kernel is dead, it is dropped and the lab's first
        request starts a fresh one. Neither is a restart of the new lab nor flags it.
        """
        self._new_lab()
        if self.kernel is not None and self.kernel.alive() and self._dirty:
            self.kernel.kill_strays()
            outcome = self.kernel.execute(RESET, self.cell_deadline(setup=True), silent=True)
            if outcome.status != "ok":
                self.close(grace=0.0)
        if self.kernel is not None and not self.kernel.alive():
            self.close(grace=0.0)
            self.kernel = None
        self._dirty = False
        self._new_lab()               # the reset does not eat the lab's time

    def cell_deadline(self, setup: bool = False) -> float:
        """When a cell (a set-up cell if ``setup``) started now must be done."""
        seconds = self.limits.setup_timeout if setup else self.limits.cell_timeout
        return min(self.deadline, time.monotonic() + seconds)

    def _fail(self, outcome: Outcome) -> Outcome:
        self.close(grace=0.0)
        if time.monotonic() >= self.deadline:
            self.broken = "timeout"
        return outcome

    def ensure(self) -> Outcome:
        """Make sure a live kernel exists: start (or restart and replay) one if needed."""
        if self.kernel is not None and self.kernel.alive():
            return Outcome("ok")
        if self.broken:
            return Outcome("timeout" if self.broken == "timeout" else "died")
        if self.kernel is not None:
            self.close()
            self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            self.broken = "kernel_died"
            return Outcome("died")
        self.starts += 1
        if self.template is None:
            root = tempfile.mkdtemp(prefix="rnnlab-grade-", dir=self.tmp_root)
            self.sandbox = Sandbox(root, self.isolated, self.limits, self.threads, self.cpus)
        else:
            self.sandbox = self.template.sandbox
        self.kernel = StudentKernel(self.sandbox, startup_timeout=self.limits.setup_timeout,
                                    template=self.template)
        outcome = self.kernel.start(self.deadline)
        if outcome.status != "ok":
            return self._fail(outcome)
        for source, setup in self.history:
            outcome = self.kernel.execute(source, self.cell_deadline(setup))
            if outcome.status in ("timeout", "died", "memory"):
                self.broken = flag_of(outcome)
                return self._fail(outcome)
        return Outcome("ok")

    def run_cell(self, source: str, setup: bool = False) -> Outcome:
        """Execute a set-up or answer cell; remembered for replay unless it hung or killed."""
        outcome = self.ensure()
        if outcome.status != "ok":
            return outcome
        self._dirty = True
        outcome = self.kernel.execute(source, self.cell_deadline(setup))
        if outcome.status in ("timeout", "died", "memory"):
            return self._fail(outcome)
        self.history.append((source, setup))
        return outcome

    def request(self, payload: dict, deadline: float) -> str:
        """Send a request to :func:`remote.serve` in the kernel; return its envelope's text.

        Raises:
            GradingEvent: timeout, kernel_died, memory, or error (no usable result file).
        """
        outcome = self.ensure()
        if outcome.status != "ok":
            raise GradingEvent(flag_of(outcome) or "error", "the kernel is not available")
        self._dirty = True
        token = uuid.uuid4().hex
        request_file = self.sandbox.ipc / f"request-{token}.json"
        result_file = self.sandbox.ipc / f"result-{token}.json"
        payload = dict(payload, result=self.sandbox.inside(result_file))
        request_file.write_text(json.dumps(payload), encoding="utf-8")
        code = (f"__import__('rnnlab.grading.remote', fromlist=['serve']).serve("
                f"globals(), {self.sandbox.inside(request_file)!r})")
        try:
            outcome = self.kernel.execute(code, deadline, silent=True)
            if outcome.status in ("timeout", "died", "memory"):
                self._fail(outcome)
                raise GradingEvent(flag_of(outcome), _EVENTS[outcome.status])
            if result_file.is_symlink() or not result_file.is_file() \
                    or result_file.stat().st_size > MAX_RESULT_BYTES:
                raise GradingEvent("memory" if outcome.memory else "error",
                                   "the call returned no usable result")
            return result_file.read_text(encoding="utf-8", errors="replace")
        finally:
            result_file.unlink(missing_ok=True)
            request_file.unlink(missing_ok=True)

    def close(self, grace: float = 1.0) -> None:
        """Stop the kernel (``grace`` seconds to exit by itself) and delete its directory (with
        a template: empty the shared directory)."""
        if self.kernel is not None:
            self.kernel.kill(grace)
        if self.sandbox is not None:
            if self.template is None:
                self.sandbox.cleanup()
            else:
                self.template.release()
        self.sandbox = None


_EVENTS = {"timeout": "timed out", "died": "the kernel died",
           "memory": "ran out of memory"}
