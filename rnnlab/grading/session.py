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
matplotlib once per lab; it cannot help a student, whose labs run only their own code.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid

from rnnlab.grading import remote
from rnnlab.grading.kernel import Outcome, StudentKernel
from rnnlab.grading.sandbox import Sandbox

__all__ = ["Limits", "KernelSession", "GradingEvent", "MAX_RESTARTS", "MAX_RESULT_BYTES", "RESET"]

MAX_RESTARTS = 3
MAX_RESULT_BYTES = 64 * 2**20
RESET = "__import__('rnnlab.grading.remote', fromlist=['reset']).reset(get_ipython())"
"""What a reused kernel runs between two labs (:func:`rnnlab.grading.remote.reset`)."""


class Limits:
    """Limits of one submission.

    Args:
        cell_timeout: seconds for each answer cell and each test (all its calls together).
        notebook_timeout: wall-clock seconds for one lab of a student, restarts included (a
            student's labs share a kernel, but each lab has its own clock).
        memory: address-space limit of the kernel, in bytes.
        setup_timeout: seconds for a kernel to start and for each instructor set-up cell
            (importing torch on a loaded machine can take longer than a student's cell may).
    """

    def __init__(self, cell_timeout: float = 60.0, notebook_timeout: float = 600.0,
                 memory: int = 4 * 2**30, setup_timeout: float = 120.0):
        for name, value in (("cell_timeout", cell_timeout), ("setup_timeout", setup_timeout),
                            ("notebook_timeout", notebook_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 2**28:
            raise ValueError(f"memory: expected an int number of bytes >= 256 MiB, got {memory!r}")
        self.cell_timeout = float(cell_timeout)
        self.notebook_timeout = float(notebook_timeout)
        self.setup_timeout = float(setup_timeout)
        self.memory = memory


class GradingEvent(BaseException):
    """Raised into a test when the student's side failed; ``flag`` names what happened.

    A ``BaseException``, so a test's ``except Exception`` cannot swallow a timeout.
    """

    def __init__(self, flag: str, message: str):
        super().__init__(message)
        self.flag = flag


def flag_of(outcome: Outcome) -> str | None:
    """The CSV flag an execution outcome deserves (``None`` for ok or an unanswered cell)."""
    if outcome.status == "timeout":
        return "timeout"
    if outcome.status == "died":
        return "kernel_died"
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
    """

    def __init__(self, limits: Limits, isolated: bool, threads: int = 1):
        self.limits = limits
        self.isolated = isolated
        self.threads = threads
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
        root = tempfile.mkdtemp(prefix="rnnlab-grade-")
        self.sandbox = Sandbox(root, self.isolated, self.limits.memory, self.threads)
        self.kernel = StudentKernel(self.sandbox, startup_timeout=self.limits.setup_timeout)
        outcome = self.kernel.start(self.deadline)
        if outcome.status != "ok":
            return self._fail(outcome)
        for source, setup in self.history:
            outcome = self.kernel.execute(source, self.cell_deadline(setup))
            if outcome.status in ("timeout", "died"):
                self.broken = "timeout" if outcome.status == "timeout" else "kernel_died"
                return self._fail(outcome)
        return Outcome("ok")

    def run_cell(self, source: str, setup: bool = False) -> Outcome:
        """Execute a set-up or answer cell; remembered for replay unless it hung or killed."""
        outcome = self.ensure()
        if outcome.status != "ok":
            return outcome
        self._dirty = True
        outcome = self.kernel.execute(source, self.cell_deadline(setup))
        if outcome.status in ("timeout", "died"):
            return self._fail(outcome)
        self.history.append((source, setup))
        return outcome

    def request(self, payload: dict, deadline: float):
        """Send a request to :func:`remote.serve` in the kernel; return its decoded ``ok`` value.

        Raises:
            GradingEvent: timeout, kernel_died, memory or error (the student's exception,
                a non-plain result, or no result at all).
        """
        outcome = self.ensure()
        if outcome.status != "ok":
            raise GradingEvent(flag_of(outcome), "the student's kernel is not available")
        self._dirty = True
        token = uuid.uuid4().hex
        request_file = self.sandbox.ipc / f"request-{token}.json"
        result_file = self.sandbox.ipc / f"result-{token}.json"
        payload = dict(payload, result=self.sandbox.inside(result_file))
        request_file.write_text(json.dumps(payload), encoding="utf-8")
        code = (f"__import__('rnnlab.grading.remote', fromlist=['serve']).serve("
                f"globals(), {self.sandbox.inside(request_file)!r})")
        outcome = self.kernel.execute(code, deadline, silent=True)
        if outcome.status in ("timeout", "died"):
            self._fail(outcome)
            raise GradingEvent(flag_of(outcome), "timed out" if outcome.status == "timeout"
                               else "the kernel died")
        if not result_file.is_file() or result_file.stat().st_size > MAX_RESULT_BYTES:
            raise GradingEvent("memory" if outcome.memory else "error",
                               "the call returned no usable result")
        try:
            envelope = json.loads(result_file.read_text(encoding="utf-8"))
            if not isinstance(envelope, dict) or set(envelope) not in ({"ok"}, {"error"}):
                raise ValueError("expected an object with one key, ok or error")
            value = None if "error" in envelope else remote.loads(envelope["ok"])
        except (ValueError, TypeError, RecursionError) as exc:
            raise GradingEvent("error", f"the result is not plain data ({exc})") from exc
        finally:
            result_file.unlink(missing_ok=True)
            request_file.unlink(missing_ok=True)
        if "error" in envelope:
            raise StudentException.from_error(envelope["error"])
        return value

    def close(self, grace: float = 1.0) -> None:
        """Stop the kernel (``grace`` seconds to exit by itself) and delete its directory."""
        if self.kernel is not None:
            self.kernel.kill(grace)
        if self.sandbox is not None:
            self.sandbox.cleanup()
        self.sandbox = None


class StudentException(Exception):
    """Carries an exception raised by the student's code (type name and message only)."""

    @staticmethod
    def from_error(error) -> BaseException:
        if not isinstance(error, dict):
            return GradingEvent("error", "the result is malformed")
        name, message = str(error.get("type", "")), str(error.get("message", ""))
        if error.get("memory") is True:
            return GradingEvent("memory", f"{name}: {message}")
        if name == "TypeError" and message.startswith("not plain data"):
            return GradingEvent("error", f"the answer returned {message[4:]}")
        builtin = _BUILTIN_ERRORS.get(name)
        return builtin(message) if builtin else StudentException(f"{name}: {message}")


_BUILTIN_ERRORS = {cls.__name__: cls for cls in (
    ArithmeticError, AssertionError, AttributeError, IndexError, KeyError, LookupError,
    NameError, NotImplementedError, OverflowError, RecursionError, RuntimeError, TypeError,
    ValueError, ZeroDivisionError)}
