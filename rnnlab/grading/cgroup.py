"""A control group per student kernel: memory, process count and CPU of its whole process tree.

Where the grader may create control groups (as root on a machine with the cgroup v1
``memory``, ``pids`` and ``cpu`` hierarchies), each kernel's sandbox starts inside a fresh group
under the grader's own, limited to

* ``memory.limit_in_bytes`` = the memory limit — every page the tree touches, the files it
  writes to the sandbox's in-memory file systems included (the kernel's OOM killer ends a process
  of the group beyond it, which :meth:`ControlGroup.oom_kills` counts);
* ``pids.max`` = the process/thread limit;
* ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` = the kernel's CPU threads: however many threads
  it starts, the tree gets that many CPUs' worth of time and no more.

Elsewhere (a normal user, cgroup v2 without a delegated subtree) :func:`available` is false and
the sandbox falls back to per-process rlimits (:mod:`rnnlab.grading.limits`).
"""

from __future__ import annotations

import functools
import os
import shlex
import signal
import time
import uuid
from pathlib import Path

__all__ = ["ControlGroup", "available", "CONTROLLERS"]

CONTROLLERS = ("memory", "pids", "cpu")
_PERIOD_US = 100_000


def _hierarchies() -> dict[str, Path]:
    """Controller → the directory of this process's group in its v1 hierarchy."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(","):
                own[name] = path
    found: dict[str, Path] = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            separator = fields.index("-")
            fstype, options = fields[separator + 1], fields[separator + 3].split(",")
            if fstype != "cgroup":
                continue
            root, mount_point = fields[3], fields[4]
            for name in CONTROLLERS:
                path = own.get(name)
                if name in options and path is not None and path.startswith(root):
                    relative = path[len(root):].lstrip("/")
                    found[name] = Path(mount_point) / relative
    return found


class ControlGroup:
    """One group in each of the memory, pids and cpu hierarchies (see the module docstring).

    Create it with :meth:`create`; start the sandbox through :meth:`wrap` so that its first
    process joins the group before anything forks; :meth:`close` kills what is left and removes
    the group.
    """

    def __init__(self, directories: dict[str, Path]):
        self.directories = directories

    @classmethod
    def create(cls, memory: int, processes: int, cpus: int) -> ControlGroup:
        """A new group limited to ``memory`` bytes, ``processes`` tasks and ``cpus`` CPUs.

        Raises:
            OSError: the hierarchies are missing or not writable here.
        """
        hierarchies = _hierarchies()
        missing = [name for name in CONTROLLERS if name not in hierarchies]
        if missing:
            raise OSError(f"control groups: no v1 hierarchy for {', '.join(missing)}")
        name = f"rnnlab-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        group = cls({})
        try:
            for controller in CONTROLLERS:
                directory = hierarchies[controller] / name
                directory.mkdir()
                group.directories[controller] = directory
            memory_dir = group.directories["memory"]
            (memory_dir / "memory.limit_in_bytes").write_text(str(memory))
            if (memory_dir / "memory.memsw.limit_in_bytes").exists():
                (memory_dir / "memory.memsw.limit_in_bytes").write_text(str(memory))
            (group.directories["pids"] / "pids.max").write_text(str(processes))
            cpu_dir = group.directories["cpu"]
            (cpu_dir / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
            (cpu_dir / "cpu.cfs_quota_us").write_text(str(cpus * _PERIOD_US))
        except OSError:
            group.close()
            raise
        return group

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` run by a shell that first moves itself into the group, then ``exec``s."""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}"
                            for d in self.directories.values())
        return ["/bin/sh", "-c", f'{joins} && exec "$@"', "rnnlab-sandbox", *command]

    def pids(self) -> set[int]:
        """The processes in the group now."""
        pids: set[int] = set()
        for directory in self.directories.values():
            try:
                pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return pids

    def oom_kills(self) -> int:
        """How many processes the OOM killer ended in this group (0 when unknown)."""
        try:
            text = (self.directories["memory"] / "memory.oom_control").read_text()
        except (KeyError, OSError):
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL every process of the group until none is left (or ``timeout`` runs out)."""
        end = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < end:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def close(self) -> None:
        """Kill what is left and remove the group's directories."""
        self.kill()
        for directory in self.directories.values():
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:          # busy while the last process is being reaped
                    time.sleep(0.02)
        self.directories = {}


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether this process can create and remove the groups (root and v1 hierarchies)."""
    if os.geteuid() != 0:
        return False
    try:
        ControlGroup.create(2**28, 16, 1).close()
    except (OSError, ValueError):
        return False
    return True
