"""The limits of one student's grading, and the program that applies them inside the sandbox.

:class:`Limits` holds every number an instructor may set (``rnnlab grade --help`` lists the
options). :data:`LAUNCHER` is the kernel's ``python -c`` program: it sets the per-process
rlimits (:func:`set_rlimits`, which a kernel forked from the template calls too), then starts
ipykernel. The rlimits hold whoever runs the grader; where control groups
are available (:mod:`rnnlab.grading.cgroup`) they bound the whole process tree as well.
"""

from __future__ import annotations

__all__ = ["Limits", "LAUNCHER", "KERNEL_OPTIONS", "launcher_args", "set_rlimits",
           "MAX_RESULT_BYTES"]

_MIN_MEMORY = 2**28
MAX_RESULT_BYTES = 64 * 2**20
"""The largest result file a proxied call may leave (its encoded return value)."""


def _seconds(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number of seconds, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    return value


class Limits:
    """Limits of one student's grading.

    Args:
        cell_timeout: seconds for each answer cell, and for each test's calls into the kernel
            (all its calls together); the grader's own checks of one test get as long again.
        notebook_timeout: wall-clock seconds for one lab of a student, restarts included (a
            student's labs share a kernel, but each lab has its own clock).
        memory: bytes of memory for the student's kernel — its address space, and with control
            groups everything its process tree holds (files in its in-memory ``/tmp`` too).
            The grader's checks of one test get as much again in their own process.
        setup_timeout: seconds for a kernel to start and for each instructor set-up cell
            (importing torch on a loaded machine can take longer than a student's cell may).
        scratch: bytes of the kernel's private, in-memory ``/tmp`` (``/dev/shm`` gets a
            quarter of it); also the largest file it may write (at least
            :data:`MAX_RESULT_BYTES`, the largest result of a call).
        processes: how many threads (and, with control groups, tasks) the kernel may run.
    """

    def __init__(self, cell_timeout: float = 60.0, notebook_timeout: float = 600.0,
                 memory: int = 4 * 2**30, setup_timeout: float = 120.0,
                 scratch: int = 256 * 2**20, processes: int = 64):
        self.cell_timeout = _seconds("cell_timeout", cell_timeout)
        self.notebook_timeout = _seconds("notebook_timeout", notebook_timeout)
        self.setup_timeout = _seconds("setup_timeout", setup_timeout)
        self.memory = _count("memory", memory, _MIN_MEMORY)
        self.scratch = _count("scratch", scratch, 2**20)
        self.processes = _count("processes", processes, 16)

    def __repr__(self) -> str:
        return (f"Limits(cell_timeout={self.cell_timeout}, notebook_timeout="
                f"{self.notebook_timeout}, memory={self.memory}, setup_timeout="
                f"{self.setup_timeout}, scratch={self.scratch}, processes={self.processes})")


def set_rlimits(memory: int, largest_file: int, processes: int) -> None:
    """Limit this process, hard and soft: address space ``memory`` bytes, files of at most
    ``largest_file`` bytes, ``processes`` tasks of its user, 1024 open files, no core dumps.

    ``RLIMIT_NPROC`` counts the sandbox's own tasks: the sandbox has a user namespace of its own.
    """
    import resource

    for name, value in (("AS", memory), ("FSIZE", largest_file), ("NPROC", processes),
                        ("NOFILE", 1024), ("CORE", 0)):
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, value))


KERNEL_OPTIONS = ("--HistoryManager.enabled=False", "--IPKernelApp.quiet=True")
"""ipykernel's options for a student kernel: no history database, no banner."""

LAUNCHER = (
    "import sys\n"
    "from rnnlab.grading.limits import set_rlimits\n"
    "set_rlimits(*map(int, sys.argv[1:4]))\n"
    "del sys.argv[1:4]\n"
    "from ipykernel import kernelapp\n"
    "kernelapp.launch_new_instance()\n"
)
"""The kernel's ``python -c`` program: :func:`set_rlimits` with :func:`launcher_args`, then
ipykernel."""


def launcher_args(limits: Limits) -> list[str]:
    """The arguments :data:`LAUNCHER` reads, in order (those of :func:`set_rlimits`)."""
    largest_file = max(limits.scratch, MAX_RESULT_BYTES + 2**20)
    return [str(limits.memory), str(largest_file), str(limits.processes)]
