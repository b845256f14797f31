"""The kernel template: a process in a sandbox that has imported what a lab needs and forks kernels.

``python -m rnnlab.grading.templateproc MEMORY LARGEST_FILE PROCESSES`` is started by
:class:`rnnlab.grading.template.KernelTemplate` in a :class:`~rnnlab.grading.sandbox.Sandbox`
whose seccomp filter lets it start processes. It imports NumPy, torch, matplotlib, ipykernel and
the parts of ``rnnlab`` the labs use — 2.8 of the 4 CPU seconds a fresh kernel takes to start —
once, and then answers the grader, in JSON lines on its standard input and output:

* ``{"op": "spawn", "connection_file": PATH}`` — end the previous kernel, empty ``/tmp`` and
  ``/dev/shm`` (but the read-only binds a checkout under ``/tmp`` brings), check that the
  mounts are where they were (a kernel may rename the directories that lead to a bind) and that
  no other process is left in the sandbox, fork, and answer
  ``{"op": "spawned", "pid": PID}`` (the kernel's pid in the sandbox), or
  ``{"op": "error", "message": …}``, after which the grader starts a new template.

The forked kernel, before any student code: starts a session of its own, keeps only
``/dev/null`` as standard streams (so it cannot reach the grader's pipes), sets its rlimits
(:func:`rnnlab.grading.limits.set_rlimits`), offers itself first to the OOM killer, loads the
full seccomp filter of a kernel (:func:`rnnlab.grading.seccomp.install`: no new processes, no
System V or POSIX message-queue objects) and starts ipykernel on ``PATH``. The template itself
is not dumpable, so a kernel cannot read or write its memory or open its files through
``/proc``; a kernel that signals it only costs the grader a new template (what the host
checks in :class:`~rnnlab.grading.template.KernelTemplate`).

Only one kernel lives at a time, and what it can leave behind — files in the in-memory ``/tmp``
and ``/dev/shm`` — is deleted before the next one starts; the shared directory is emptied by the
grader. So each kernel starts from the state a fresh sandbox would give it, minus the imports.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import stat
import sys

__all__ = ["main", "empty", "SCRATCH", "PRELOADED"]

SCRATCH = ("/tmp", "/dev/shm")
"""The sandbox's writable in-memory file systems, emptied before each kernel."""

PRELOADED = ("numpy", "torch", "matplotlib.pyplot", "ipykernel.kernelapp", "ipykernel.ipkernel",
             "ipykernel.zmqshell", "rnnlab.labkit", "rnnlab.cells", "rnnlab.init",
             "rnnlab.train", "rnnlab.tasks", "rnnlab.clipping", "rnnlab.grading.remote")
"""What the template imports before it forks (what the labs' set-up cells and the kernel use)."""

_PR_SET_DUMPABLE = 4


def _prctl_dumpable(value: int) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


def _mounts() -> list[str]:
    """The sandbox's mount points, in order (``/proc/self/mountinfo``)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
        return [line.split()[4] for line in handle]


def empty(top: str, mode: int) -> None:
    """Delete what ``top`` holds, whatever its permissions and depth, and give ``top`` back
    ``mode``. Mounts under it (the read-only binds of a checkout or virtual environment that
    lives under ``/tmp``) stay, and so do the directories that lead to them (made ``rwx`` for
    their owner: a kernel may have taken that away; the caller then checks the mounts).

    Also the grader's way to empty the shared directory: no kernel may run meanwhile (a kernel
    could otherwise swap a directory for a link between two looks)."""
    os.chmod(top, mode)
    device = os.lstat(top).st_dev
    stack, directories = [top], []
    while stack:
        directory = stack.pop()
        if directory != top:
            os.chmod(directory, stat.S_IRWXU)
            directories.append(directory)
        for entry in os.scandir(directory):
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                if info.st_dev == device:
                    stack.append(entry.path)
            else:
                os.unlink(entry.path)
    for directory in reversed(directories):
        try:
            os.rmdir(directory)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EBUSY):   # it leads to a mount
                raise


def _foreign_processes() -> list[int]:
    """Processes of the sandbox other than this one and bwrap's init (pid 1)."""
    mine = {1, os.getpid()}
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) not in mine]


def _end(children: set[int]) -> None:
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    children.clear()


def _kernel(connection_file: str, rlimits: list[int], program: bytes | None) -> None:
    """In the forked child: fence this process, then run ipykernel (never returns)."""
    try:
        os.setsid()
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        _prctl_dumpable(1)
        with open("/proc/self/oom_score_adj", "w", encoding="ascii") as handle:
            handle.write("1000")
        from rnnlab.grading.limits import KERNEL_OPTIONS, set_rlimits
        from rnnlab.grading.seccomp import install

        set_rlimits(*rlimits)
        if program is not None:
            install(program)
        from ipykernel import kernelapp

        sys.path.insert(0, "")          # as ``python -c`` has it in a fresh kernel
        kernelapp.launch_new_instance(argv=["-f", connection_file, *KERNEL_OPTIONS])
    finally:
        os._exit(0)


def _answer(outbox, message: dict) -> None:
    outbox.write(json.dumps(message).encode() + b"\n")
    outbox.flush()


def main(argv: list[str]) -> int:
    rlimits = [int(a) for a in argv[1:4]]
    here = os.getcwd()
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    _prctl_dumpable(0)
    inbox = os.fdopen(os.dup(0), "rb")
    outbox = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    import gc
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    sys.modules["torch"].set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from rnnlab.grading.seccomp import bpf_program

    program = bpf_program()
    layout = _mounts()
    modes = {top: stat.S_IMODE(os.lstat(top).st_mode) for top in SCRATCH}
    gc.collect()
    gc.freeze()
    _answer(outbox, {"op": "ready"})
    children: set[int] = set()
    for line in inbox:
        request = json.loads(line)
        if request.get("op") != "spawn":
            _answer(outbox, {"op": "error", "message": f"unknown request {request!r:.200}"})
            continue
        _end(children)
        try:
            for top in SCRATCH:
                empty(top, modes[top])
        except OSError as exc:
            _answer(outbox, {"op": "error", "message": f"could not empty the scratch: {exc}"})
            continue
        if _mounts() != layout:
            _answer(outbox, {"op": "error", "message": "the sandbox's mounts have moved"})
            continue
        foreign = _foreign_processes()
        if foreign:
            _answer(outbox, {"op": "error", "message": f"processes left: {foreign[:10]}"})
            continue
        pid = os.fork()
        if pid == 0:
            inbox.close()
            outbox.close()
            _kernel(str(request["connection_file"]), rlimits, program)
        children.add(pid)
        _answer(outbox, {"op": "spawned", "pid": pid})
    _end(children)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
