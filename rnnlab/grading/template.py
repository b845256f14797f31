"""The kernel template, the grader's side: one sandbox whose pre-imported process forks kernels.

Starting a student kernel costs about 4 CPU seconds, 2.8 of them importing torch. A
:class:`KernelTemplate` pays that once per grading worker: its sandbox (bwrap with every fence of
:mod:`rnnlab.grading.sandbox`, a control group where there are control groups) runs
:mod:`rnnlab.grading.templateproc`, which imports what the labs use and forks one kernel per
request; each forked kernel fences itself with the full seccomp filter before it runs any
student code, and only one lives at a time. Between two kernels the template empties the
in-memory ``/tmp`` and ``/dev/shm`` and the grader empties the shared directory
(:meth:`KernelTemplate.release`), so the next kernel — the same student's after a crash, or
the next student's — finds what a fresh sandbox would give it.

Whatever goes wrong with the template — it died, hangs, answers nonsense, reports a process
that should not be there — the grader kills its whole sandbox and starts a new one; a spawn is
tried on a new template once before the kernel is reported dead. Used only where bwrap and its
seccomp filter work (:func:`available`): without the filter a kernel could leave a process
behind for the next one.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import tempfile
import time

import psutil

from rnnlab.grading.limits import Limits, launcher_args
from rnnlab.grading.processes import descendants, end, kill_all
from rnnlab.grading.sandbox import Sandbox, support
from rnnlab.grading.templateproc import empty

__all__ = ["KernelTemplate", "ForkedKernel", "TemplateError", "available", "SPAWN_TIMEOUT"]

_MAX_REPLY = 4096
SPAWN_TIMEOUT = 20.0
"""Seconds a running template has to fork a kernel (it takes well under one; emptying a scratch
full of tiny files takes a few) before it is replaced by a new template."""


class TemplateError(RuntimeError):
    """The template did not answer as it should (it is then replaced)."""


def available() -> bool:
    """Whether kernels may be forked from a template here: bwrap and its seccomp filter work."""
    found = support()
    return found.bwrap and found.seccomp


class ForkedKernel:
    """A kernel forked by the template, seen from the grader (the part of ``Popen`` it uses).

    The template does not reap it until the next spawn, so its pid stays its own while the
    grader may signal it; psutil checks the process's identity before each signal.
    """

    def __init__(self, process: psutil.Process):
        self._process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        """``None`` while it runs, ``-9`` once it is gone or a zombie."""
        try:
            if self._process.is_running() and \
                    self._process.status() != psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            pass
        return -signal.SIGKILL

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired("forked kernel", timeout)
            time.sleep(0.01)
        return code

    def kill(self) -> None:
        try:
            self._process.kill()
        except psutil.Error:
            pass


def _ns_pid(pid: int) -> int | None:
    """``pid``'s number in its innermost PID namespace (``None`` once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


class KernelTemplate:
    """A sandbox with a pre-imported process that forks student kernels (module docstring).

    Args:
        limits: the kernels' limits (the sandbox's too: memory, scratch, tasks).
        threads: CPU threads of a kernel.
        cpus: CPUs to pin the sandbox to where there are no control groups (``None``: any).
        tmp_root: where the sandbox's private directory is made (``None``: the system's).
    """

    def __init__(self, limits: Limits, threads: int = 1, cpus: list[int] | None = None,
                 tmp_root: str | None = None):
        if not available():
            raise RuntimeError(f"kernel template: expected bwrap with its seccomp filter, "
                               f"got {support().describe()}")
        self.limits = limits
        self._sandbox_args = (threads, cpus, tmp_root)
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self._pending = b""
        self._new_sandbox()

    def _new_sandbox(self) -> None:
        threads, cpus, tmp_root = self._sandbox_args
        root = tempfile.mkdtemp(prefix="rnnlab-tpl-", dir=tmp_root)
        self.sandbox = Sandbox(root, True, self.limits, threads, cpus)
        self._ipc_mode = stat.S_IMODE(self.sandbox.ipc.stat().st_mode)

    def start(self, deadline: float) -> None:
        """Start the template now and wait until it has imported everything (``spawn`` starts
        it when needed; this only moves the cost).

        Raises:
            TemplateError: it did not become ready by ``deadline`` (``time.monotonic()``).
        """
        self.stop()
        self.starts += 1
        program = [sys.executable, "-m", "rnnlab.grading.templateproc",
                   *launcher_args(self.limits)]
        self.process = self.sandbox.launch(program, processes=True, pipes=True)
        self._pending = b""
        reply = self._receive(deadline)
        if reply.get("op") != "ready":
            raise TemplateError(f"expected the template to be ready, got {reply!r:.200}")

    def _receive(self, deadline: float) -> dict:
        """The template's next JSON line, by ``deadline`` (``time.monotonic()``)."""
        stream = self.process.stdout
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TemplateError("the template did not answer in time")
            ready, _, _ = select.select([stream], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(stream.fileno(), _MAX_REPLY)
            if not chunk:
                raise TemplateError("the template is gone")
            self._pending += chunk
            if len(self._pending) > _MAX_REPLY:
                raise TemplateError("the template's answer is too long")
        line, self._pending = self._pending.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise TemplateError(f"the template's answer is not JSON: {line[:200]!r}") from exc
        if not isinstance(reply, dict):
            raise TemplateError(f"expected a JSON object from the template, got {line[:200]!r}")
        return reply

    def _host_process(self, ns_pid: int) -> psutil.Process:
        """The grader's view of the template's child numbered ``ns_pid`` in the sandbox."""
        for process in psutil.Process(self.process.pid).children(recursive=True):
            if _ns_pid(process.pid) == ns_pid:
                return process
        raise TemplateError(f"no process {ns_pid} in the template's sandbox")

    def spawn(self, connection_file: str) -> ForkedKernel:
        """Fork a kernel on ``connection_file`` (its path inside the sandbox).

        The template's own clocks apply, not the student's: a new template gets the limits'
        ``setup_timeout`` to import, a running one :data:`SPAWN_TIMEOUT` to fork. The kernel's
        start is then timed by its caller.

        Raises:
            TemplateError: neither this template nor a new one could fork it.
        """
        problem = None
        for _ in range(2):
            try:
                if self.process is None or self.process.poll() is not None:
                    self.start(time.monotonic() + self.limits.setup_timeout)
                message = {"op": "spawn", "connection_file": connection_file}
                self.process.stdin.write(json.dumps(message).encode() + b"\n")
                self.process.stdin.flush()
                reply = self._receive(time.monotonic() + SPAWN_TIMEOUT)
                if reply.get("op") != "spawned" or not isinstance(reply.get("pid"), int):
                    raise TemplateError(f"expected a spawned kernel, got {reply!r:.200}")
                return ForkedKernel(self._host_process(reply["pid"]))
            except (OSError, TemplateError, psutil.Error) as exc:
                problem = exc
                self.stop()
        raise TemplateError(f"could not fork a kernel: {problem}")

    def release(self) -> None:
        """After a kernel is dead: empty the shared directory and give it back its mode, as the
        template does with its scratch (:func:`~rnnlab.grading.templateproc.empty`; a normal
        user's grader cannot list a directory the kernel locked, and the directory itself is
        bound into the sandbox, so it is emptied rather than replaced)."""
        try:
            empty(str(self.sandbox.ipc), self._ipc_mode)
        except OSError:             # what it cannot empty, no later kernel may see
            self.close()
            self._new_sandbox()

    def stop(self) -> None:
        """Kill the template, its kernel and everything in its sandbox (its PID namespace)."""
        if self.process is None:
            return
        kill_all(descendants(self.process.pid))
        if self.sandbox.group is not None:
            self.sandbox.group.kill()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        end(self.process)
        self.process = None

    def close(self) -> None:
        """Stop the template and delete its sandbox (directory and control group)."""
        self.stop()
        self.sandbox.cleanup()
