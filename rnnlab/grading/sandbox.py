"""The sandbox a student kernel runs in: bubblewrap when available, else a plain process.

With ``bwrap`` (Debian package ``bubblewrap``) the kernel sees a fresh root file system made of

* read-only binds of the system (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, a few harmless files of
  ``/etc``), the Python installation and virtual environment (prefixes and site-packages) and
  the ``rnnlab`` package directory — and nothing else of the host: not the repository, its
  ``solutions/`` or ``tests/``, not the other submissions, not the grader's home;
* a private writable ``/tmp`` (a fresh host directory, deleted afterwards) that is also ``HOME``;
* ``/run/rnnlab``: the only directory shared with the grader, holding the kernel's IPC sockets,
  its connection file and the request/result files of proxied calls;
* new user, PID, IPC, UTS, cgroup and network namespaces (no network at all, not even the
  host's loopback), a new session, and ``--die-with-parent`` so the sandbox dies with the grader.

Limits are set by the launcher inside (:data:`LAUNCHER`): address space (``RLIMIT_AS``),
file size (``RLIMIT_FSIZE``) and no core dumps; time limits are enforced by the grader.
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
from pathlib import Path

__all__ = ["bwrap_available", "Sandbox", "LAUNCHER", "INSIDE_IPC"]

INSIDE_IPC = "/run/rnnlab"
_SYSTEM = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/fonts",
        "/etc/localtime", "/etc/mime.types", "/etc/nsswitch.conf")

LAUNCHER = (
    "import resource, sys\n"

    "limit = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
    "from ipykernel import kernelapp\n"
    "kernelapp.launch_new_instance()\n"
)
"""The kernel's ``python -c`` program: set the rlimits, then start ipykernel."""


@functools.lru_cache(maxsize=1)
def bwrap_available() -> bool:
    """Whether ``bwrap`` exists and can create the namespaces the sandbox needs here."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    command = [bwrap, *_binds(_SYSTEM, "--ro-bind"), "--proc", "/proc", "--dev", "/dev",
               "--unshare-all", "--die-with-parent", "true"]
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _binds(paths, flag: str) -> list[str]:
    args: list[str] = []
    for path in paths:
        if os.path.lexists(path):
            args += [flag, path, path]
    return args


def python_paths() -> list[str]:
    """The directories a kernel of this Python needs: prefixes, site-packages, rnnlab."""
    import rnnlab

    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    paths.update(site.getsitepackages())
    paths.add(os.path.dirname(os.path.abspath(rnnlab.__file__)))
    user_site = site.getusersitepackages()
    if isinstance(user_site, str) and user_site in sys.path:
        paths.add(user_site)
    real = {os.path.realpath(p) for p in paths}
    return sorted(p for p in paths | real if os.path.isdir(p))


class Sandbox:
    """A private directory and the command that starts a kernel in it.

    Args:
        root: an empty host directory owned by this sandbox (deleted by :meth:`cleanup`).
        isolated: run under bwrap (``True``) or as a plain process (``False``).
        memory: the address-space limit of the kernel, in bytes.
        threads: the number of CPU threads torch/OpenMP may use in the kernel.
    """

    def __init__(self, root: str | Path, isolated: bool, memory: int, threads: int = 1):
        if not isinstance(memory, int) or memory <= 0:
            raise ValueError(f"memory: expected a positive number of bytes, got {memory!r}")
        if not isinstance(threads, int) or threads <= 0:
            raise ValueError(f"threads: expected a positive int, got {threads!r}")
        self.root = Path(root)
        self.isolated = isolated
        self.memory = memory
        self.threads = threads
        self.ipc = self.root / "ipc"
        self.tmp = self.root / "tmp"
        self.ipc.mkdir(parents=True)
        self.tmp.mkdir()

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
            "PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin",
            "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.matplotlib",
            "JUPYTER_RUNTIME_DIR": f"{home}/.jupyter", "MPLBACKEND": "agg",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "RNNLAB_DEVICE": "cpu",
            "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": "",
        }

    def command(self, connection_file: str | Path) -> list[str]:
        """The argv that starts an ipykernel on ``connection_file`` (a file under ``ipc``)."""
        kernel = [sys.executable, "-c", LAUNCHER, str(self.memory), "-f",
                  self.inside(connection_file), "--HistoryManager.enabled=False",
                  "--IPKernelApp.quiet=True"]
        if not self.isolated:
            return kernel
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise RuntimeError("bwrap: expected on PATH for an isolated sandbox, found none")
        return [
            bwrap, *_binds(_SYSTEM, "--ro-bind"), *_binds(_ETC, "--ro-bind"),
            "--proc", "/proc", "--dev", "/dev",
            "--bind", str(self.tmp), "/tmp", "--bind", str(self.ipc), INSIDE_IPC,
            # after /tmp: a checkout (and its venv) under /tmp must not be hidden by it
            *_binds(python_paths(), "--ro-bind"),
            "--chdir", "/tmp", "--unshare-all", "--new-session", "--die-with-parent",
            "--hostname", "sandbox", "--", *kernel,
        ]

    def cleanup(self) -> None:
        """Delete the private directory (the kernel must be dead)."""
        shutil.rmtree(self.root, ignore_errors=True)
