"""One student kernel: start it in its sandbox, execute code with a deadline, kill it.

The grader talks to the kernel only on the shell channel (execute requests and replies, over
IPC sockets in the sandbox's shared directory). It never subscribes to IOPub, so whatever the
student prints is dropped by the kernel's publisher and cannot fill the grader's memory or be
mistaken for a result; results of proxied calls travel through files (see :mod:`remote`).
A reply larger than :data:`MAX_MESSAGE_BYTES` is dropped by ZeroMQ before it reaches the
grader's memory (the execution then times out), and while it waits the grader watches the
shared directory: more than :data:`MAX_SHARED_BYTES` there (the only place on the host's disk
the kernel can write) kills the kernel with the outcome ``memory``.
"""

from __future__ import annotations

import os
import queue
import subprocess
import time
import uuid
from dataclasses import dataclass

import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from rnnlab.grading.limits import MAX_RESULT_BYTES
from rnnlab.grading.processes import descendants, end, kill_all
from rnnlab.grading.sandbox import Sandbox
from rnnlab.grading.template import KernelTemplate, TemplateError

__all__ = ["Outcome", "StudentKernel", "MAX_MESSAGE_BYTES", "MAX_SHARED_BYTES"]

_POLL = 0.05
_WATCH = 0.5                       # seconds between two looks at the shared directory
MAX_MESSAGE_BYTES = 16 * 2**20
MAX_SHARED_BYTES = 2 * MAX_RESULT_BYTES + 16 * 2**20
_MAX_SHARED_ENTRIES = 1000


def _context() -> zmq.Context:
    """One ZeroMQ context for student kernels: its sockets refuse oversized messages."""
    global _CONTEXT
    if _CONTEXT is None or _CONTEXT.closed:
        _CONTEXT = zmq.Context()
        _CONTEXT.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    return _CONTEXT


_CONTEXT: zmq.Context | None = None


def shared_bytes(directory: os.PathLike | str) -> int:
    """Disk bytes under ``directory`` (``MAX_SHARED_BYTES + 1`` if it holds too many entries)."""
    total, count, stack = 0, 0, [os.fspath(directory)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            count += 1
            if count > _MAX_SHARED_ENTRIES:
                return MAX_SHARED_BYTES + 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total


@dataclass(frozen=True)
class Outcome:
    """What happened to one execution: ``status`` is ok, error, timeout, died or memory."""

    status: str
    ename: str = ""
    evalue: str = ""

    @property
    def memory(self) -> bool:
        if self.status == "memory":
            return True
        text = self.evalue.lower()
        return self.ename == "MemoryError" or "can't allocate memory" in text \
            or "out of memory" in text or "bad_alloc" in text


class StudentKernel:
    """An ipykernel process in a :class:`Sandbox`, driven over its shell channel.

    Args:
        sandbox: where the kernel runs (its directory must be fresh).
        startup_timeout: seconds to wait for the kernel's first reply.
        template: fork the kernel from this template (whose sandbox ``sandbox`` must be)
            rather than start a new Python in ``sandbox``.
    """

    def __init__(self, sandbox: Sandbox, startup_timeout: float = 60.0,
                 template: KernelTemplate | None = None):
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout: expected > 0 seconds, got {startup_timeout!r}")
        if template is not None and template.sandbox is not sandbox:
            raise ValueError("template: expected a template of the kernel's sandbox, got "
                             "another sandbox's")
        self.sandbox = sandbox
        self.template = template
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.client: BlockingKernelClient | None = None
        self.name = ""
        self._oom_kills = 0

    def start(self, deadline: float) -> Outcome:
        """Start the kernel and wait until it answers (``died``/``timeout`` if it does not)."""
        name = self.name = f"kernel-{uuid.uuid4().hex[:8]}"
        host_file = self.sandbox.ipc / f"{name}.json"
        inside_file = self.sandbox.ipc / f"{name}-inside.json"
        info_file, info = write_connection_file(
            str(host_file), transport="ipc", ip=str(self.sandbox.ipc / name))
        inside_ip = self.sandbox.inside(self.sandbox.ipc / name)
        ports = {k: info[k] for k in info if k.endswith("_port")}
        write_connection_file(str(inside_file), transport="ipc", ip=inside_ip,
                              key=info["key"].encode(), **ports)
        deadline = min(deadline, time.monotonic() + self.startup_timeout)
        if self.template is None:
            self.process = self.sandbox.start(inside_file)
        else:
            try:
                self.process = self.template.spawn(self.sandbox.inside(inside_file))
            except TemplateError:
                return Outcome("died")
        self._oom_kills = self.sandbox.oom_kills()     # after a template's restart, if any
        self.client = BlockingKernelClient(context=_context())
        self.client.load_connection_file(info_file)
        self.client.start_channels(shell=True, iopub=False, stdin=False, hb=False,
                                   control=False)
        msg_id = self.client.kernel_info()
        return self._wait(msg_id, deadline)

    def execute(self, code: str, deadline: float, silent: bool = False) -> Outcome:
        """Run ``code`` and wait for its reply until ``deadline`` (``time.monotonic()``)."""
        if not self.alive():
            return self._died()
        msg_id = self.client.execute(code, silent=silent, store_history=False,
                                     allow_stdin=False, stop_on_error=False)
        return self._wait(msg_id, deadline)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _died(self) -> Outcome:
        """``memory`` if the control group's OOM killer ended the kernel, else ``died``."""
        return Outcome("memory" if self.sandbox.oom_kills() > self._oom_kills else "died")

    def _wait(self, msg_id: str, deadline: float) -> Outcome:
        watch = time.monotonic() + _WATCH
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return Outcome("timeout")
            if now >= watch:
                watch = now + _WATCH
                if shared_bytes(self.sandbox.ipc) > MAX_SHARED_BYTES:
                    self.kill(grace=0.0)
                    return Outcome("memory")
            try:
                reply = self.client.get_shell_msg(timeout=min(_POLL, remaining))
            except queue.Empty:
                if not self.alive():
                    return self._died()
                continue
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            content = reply.get("content", {})
            if content.get("status") == "ok":
                return Outcome("ok")
            return Outcome("error", str(content.get("ename", "")),
                           str(content.get("evalue", ""))[:2000])

    def kill_strays(self) -> None:
        """Kill every process of the sandbox but the kernel (and, with bwrap, its ``init``).

        What a lab left running — a subprocess, a detached daemon — must not run on into the
        student's next lab. The kernel is the topmost process, bwrap aside, whose command line
        names its connection file; forks of it share that command line and die like the rest.
        Needs psutil; without it nothing is killed until the kernel is. A kernel forked from a
        template cannot start processes (its seccomp filter), so there is nothing to kill.
        """
        if not self.alive() or self.template is not None:
            return
        try:
            import psutil

            root = psutil.Process(self.process.pid)
            everything = root.children(recursive=True)
            if self.sandbox.isolated:
                ours = [p for p in everything if _runs_kernel(p.cmdline(), self.name)]
                kernel = next(p for p in ours if p.ppid() not in {q.pid for q in ours})
                keep = {kernel.pid, *(p.pid for p in kernel.parents())}
            else:
                keep = {root.pid}
        except Exception:          # psutil missing, a process gone, no kernel found
            return
        kill_all([process for process in everything if process.pid not in keep])

    def kill(self, grace: float = 1.0) -> None:
        """Stop the kernel: ask it to exit, then SIGKILL its tree and process group.

        Exiting on its own lets the sandbox reap it (its CPU time is then accounted to the
        grader); whatever is left after ``grace`` seconds — a hung kernel, the processes it
        started, even those that left its session — is killed, and with bwrap the whole PID
        namespace goes with it. A kernel forked from a template is killed alone (it cannot
        start processes); its template and sandbox stay for the next kernel.
        """
        if self.process is None:
            return
        children = descendants(self.process.pid)
        if self.client is not None:
            if self.alive() and grace > 0:
                self.client.execute("import os; os._exit(0)", silent=True, store_history=False)
                try:
                    self.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            self.client.stop_channels()
            self.client = None
        kill_all(children)
        if self.template is None:
            end(self.process)
        else:
            self.process.kill()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.process = None


def _runs_kernel(cmdline: list[str], name: str) -> bool:
    return bool(cmdline) and os.path.basename(cmdline[0]) != "bwrap" \
        and any(name in arg for arg in cmdline)
