"""The sandbox a student kernel runs in: bubblewrap without privilege, else a plain process.

With ``bwrap`` (Debian package ``bubblewrap``) the kernel sees a fresh root file system made of

* read-only binds of the system (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, a few harmless files of
  ``/etc``), the Python installation and virtual environment (prefixes and site-packages) and
  the ``rnnlab`` package directory — and nothing else of the host: not the repository, its
  ``solutions/`` or ``tests/``, not the other submissions, not the grader's home. The root, ``/etc``
  and ``/dev`` are read-only;
* a private, in-memory ``/tmp`` (also ``HOME``) of :attr:`Limits.scratch` bytes and a
  ``/dev/shm`` of a quarter of that;
* ``/run/rnnlab``: the only directory shared with the grader, holding the kernel's IPC sockets,
  its connection file and the request/result files of proxied calls;
* ``/run/rnnlab-lib/rnnlab``: the grader's own ``rnnlab`` package, first on the kernel's
  ``PYTHONPATH``, so the kernel imports the same code however the grader found it (installed,
  editable, or from a checkout);
* new user, PID, IPC, UTS, cgroup and network namespaces (no network at all, not even the
  host's loopback), a new session, and ``--die-with-parent`` so the sandbox dies with the grader.

Whoever runs the grader — root included — the kernel runs as uid/gid 65534 in its user
namespace, with every capability dropped, ``no_new_privs``, no further user namespaces and the
seccomp filter of :mod:`rnnlab.grading.seccomp` (no mounts, no new processes, no ptrace, …).
Limits: the rlimits of :data:`rnnlab.grading.limits.LAUNCHER` always; where control groups are
available (root, cgroup v1) the whole tree also sits in a
:class:`~rnnlab.grading.cgroup.ControlGroup`, otherwise the kernel is pinned to its CPUs
(``taskset``; the filter forbids changing that).

Without bwrap the same kernel runs as a plain process of the grader's user, in a fresh working
directory with a clean environment and the same rlimits, but it can read every file that user
can and reach the network.
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rnnlab.grading import cgroup, seccomp
from rnnlab.grading.limits import KERNEL_OPTIONS, LAUNCHER, Limits, launcher_args

__all__ = ["Support", "support", "bwrap_available", "Sandbox", "INSIDE_IPC", "SANDBOX_UID"]

INSIDE_IPC = "/run/rnnlab"
INSIDE_LIB = "/run/rnnlab-lib"
SANDBOX_UID = 65534
_SYSTEM = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/fonts",
        "/etc/localtime", "/etc/mime.types", "/etc/nsswitch.conf")


def _binds(paths, flag: str) -> list[str]:
    args: list[str] = []
    for path in paths:
        if os.path.lexists(path):
            args += [flag, path, path]
    return args


def _fences(seccomp_fd: int | None) -> list[str]:
    """The bwrap options that take every privilege away (the uid is mapped, not the grader's)."""
    fences = ["--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid",
              str(SANDBOX_UID), "--disable-userns", "--cap-drop", "ALL", "--new-session",
              "--die-with-parent"]
    if seccomp_fd is not None:
        fences += ["--seccomp", str(seccomp_fd)]
    return fences


@dataclass(frozen=True)
class Support:
    """What this machine lets the sandbox do: bwrap with every fence, seccomp, control groups."""

    bwrap: bool
    seccomp: bool
    cgroups: bool

    def describe(self) -> str:
        if not self.bwrap:
            return "no sandbox (bwrap missing or unusable)"
        parts = ["bwrap, uid 65534, no capabilities"]
        parts.append("seccomp" if self.seccomp else "NO seccomp filter (libseccomp2 missing)")
        parts.append("control groups (memory, pids, cpu)" if self.cgroups
                     else "per-process rlimits, CPU pinning (no control groups)")
        return ", ".join(parts)


@functools.lru_cache(maxsize=1)
def support() -> Support:
    """Probe once: can bwrap run with every fence (and the seccomp filter) here?"""
    program = seccomp.bpf_program()
    bwrap = shutil.which("bwrap")
    works = False
    if bwrap is not None:
        fd = seccomp.memfd(program) if program is not None else None
        command = [bwrap, *_binds(_SYSTEM, "--ro-bind"), "--proc", "/proc", "--dev", "/dev",
                   "--size", str(2**20), "--tmpfs", "/tmp", "--remount-ro", "/",
                   *_fences(fd), "true"]
        try:
            works = subprocess.run(command, capture_output=True, timeout=30,
                                   pass_fds=() if fd is None else (fd,)).returncode == 0
        except (OSError, subprocess.SubprocessError):
            works = False
        finally:
            if fd is not None:
                os.close(fd)
    return Support(bwrap=works, seccomp=works and program is not None,
                   cgroups=cgroup.available())


def bwrap_available() -> bool:
    """Whether kernels can run under bwrap with every fence (see :func:`support`)."""
    return support().bwrap


def _package() -> str:
    """The directory of the ``rnnlab`` package this grader runs."""
    import rnnlab

    return os.path.dirname(os.path.abspath(rnnlab.__file__))


def python_paths() -> list[str]:
    """The directories a kernel of this Python needs: prefixes, site-packages, rnnlab."""
    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    paths.update(site.getsitepackages())
    paths.add(_package())
    user_site = site.getusersitepackages()
    if isinstance(user_site, str) and user_site in sys.path:
        paths.add(user_site)
    real = {os.path.realpath(p) for p in paths}
    return sorted(p for p in paths | real if os.path.isdir(p))


class Sandbox:
    """A private directory, and the process that starts a kernel in it.

    Args:
        root: an empty host directory owned by this sandbox (deleted by :meth:`cleanup`).
        isolated: run under bwrap (``True``) or as a plain process (``False``).
        limits: memory, scratch space and process limits.
        threads: the number of CPU threads torch/OpenMP may use in the kernel.
        cpus: the CPUs to pin the kernel to when there are no control groups (``None``:
            no pinning).
    """

    def __init__(self, root: str | Path, isolated: bool, limits: Limits, threads: int = 1,
                 cpus: list[int] | None = None):
        if not isinstance(limits, Limits):
            raise TypeError(f"limits: expected Limits, got {type(limits).__name__}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0:
            raise ValueError(f"threads: expected a positive int, got {threads!r}")
        self.root = Path(root)
        self.isolated = isolated
        self.limits = limits
        self.threads = threads
        self.cpus = cpus
        self.ipc = self.root / "ipc"
        self.tmp = self.root / "tmp"
        self.ipc.mkdir(parents=True)
        self.tmp.mkdir()
        self.group: cgroup.ControlGroup | None = None
        if support().cgroups:
            self.group = cgroup.ControlGroup.create(limits.memory, limits.processes, threads)

    def inside(self, host_path: str | Path) -> str:
        """The path under which the kernel sees a file of the shared ``ipc`` directory."""
        relative = Path(host_path).relative_to(self.ipc)
        base = INSIDE_IPC if self.isolated else str(self.ipc)
        return str(Path(base) / relative)

    def environment(self) -> dict[str, str]:
        """A clean environment: nothing of the grader's leaks in (tokens, paths, device)."""
        home = "/tmp" if self.isolated else str(self.tmp)
        threads = str(self.threads)
        return {
            "PYTHONPATH": INSIDE_LIB if self.isolated else os.path.dirname(_package()),
            "PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin",
            "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.matplotlib",
            "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter", "MPLBACKEND": "agg",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "RNNLAB_DEVICE": "cpu",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": "",
        }

    def _kernel(self, connection_file: str | Path) -> list[str]:
        return [sys.executable, "-c", LAUNCHER, *launcher_args(self.limits), "-f",
                self.inside(connection_file), *KERNEL_OPTIONS]

    def command(self, program: list[str], seccomp_fd: int | None = None) -> list[str]:
        """The argv that runs ``program`` (an argv of this Python) in the sandbox."""
        command = list(program)
        if self.isolated:
            bwrap = shutil.which("bwrap")
            if bwrap is None:
                raise RuntimeError("bwrap: expected on PATH for an isolated sandbox, found none")
            scratch = self.limits.scratch
            command = [
                bwrap, *_binds(_SYSTEM, "--ro-bind"), *_binds(_ETC, "--ro-bind"),
                "--proc", "/proc", "--dev", "/dev",
                "--size", str(max(scratch // 4, 2**20)), "--tmpfs", "/dev/shm",
                "--size", str(scratch), "--tmpfs", "/tmp",
                "--bind", str(self.ipc), INSIDE_IPC,
                # after /tmp: a checkout (and its venv) under /tmp must not be hidden by it
                *_binds(python_paths(), "--ro-bind"),
                "--ro-bind", _package(), f"{INSIDE_LIB}/rnnlab",
                "--remount-ro", "/dev", "--remount-ro", "/",
                "--chdir", "/tmp", "--hostname", "sandbox", *_fences(seccomp_fd),
                "--", *command,
            ]
        if self.group is not None:
            return self.group.wrap(command)
        taskset = shutil.which("taskset")
        if self.cpus and taskset is not None:
            return [taskset, "--cpu-list", ",".join(map(str, self.cpus)), *command]
        return command

    def start(self, connection_file: str | Path) -> subprocess.Popen:
        """Start an ipykernel on ``connection_file`` (a file under ``ipc``) in the sandbox."""
        return self.launch(self._kernel(connection_file))

    def launch(self, program: list[str], processes: bool = False,
               pipes: bool = False) -> subprocess.Popen:
        """Run ``program`` in the sandbox, in its own session, its output discarded.

        ``processes``: under the seccomp filter that lets it start processes (the kernel
        template's, see :func:`rnnlab.grading.seccomp.bpf_program`). ``pipes``: its standard
        input and output are pipes to the caller.
        """
        program_bpf = seccomp.bpf_program(processes) if self.isolated else None
        fd = seccomp.memfd(program_bpf) if program_bpf is not None and support().seccomp \
            else None
        pipe = subprocess.PIPE if pipes else subprocess.DEVNULL
        try:
            return subprocess.Popen(
                self.command(program, fd), env=self.environment(),
                cwd=self.root if self.isolated else self.tmp, stdin=pipe, stdout=pipe,
                stderr=subprocess.DEVNULL, start_new_session=True,
                pass_fds=() if fd is None else (fd,))
        finally:
            if fd is not None:
                os.close(fd)

    def oom_kills(self) -> int:
        """Processes of the sandbox the OOM killer ended (0 without control groups)."""
        return self.group.oom_kills() if self.group is not None else 0

    def cleanup(self) -> None:
        """Kill what is left in the control group, delete the private directory."""
        if self.group is not None:
            self.group.close()
            self.group = None
        shutil.rmtree(self.root, ignore_errors=True)
