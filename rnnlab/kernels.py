"""Jupyter kernels for the course: the same notebooks on the CPU or on a GPU.

Every page and lab computes on :func:`rnnlab.default_device`, which reads ``RNNLAB_DEVICE``.
The kernelspec ``rnnlab-cuda`` is this Python with ``RNNLAB_DEVICE=cuda`` set, so choosing that
kernel in JupyterLab (or ``pytest --nbval --nbval-kernel-name rnnlab-cuda``) runs a notebook on
the GPU without editing it; the default ``python3`` kernel runs it on the CPU (or on a GPU when
one is available and the variable is unset).

Command line: ``rnnlab kernel install [--user | --sys-prefix | --prefix PATH]`` and
``rnnlab kernel list``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnnlab.checks import check_bool, check_type

__all__ = ["CUDA_KERNEL", "install_cuda_kernel", "list_kernels"]

CUDA_KERNEL = "rnnlab-cuda"
_DISPLAY_NAME = "Python 3 (rnnlab, CUDA)"


def install_cuda_kernel(*, user: bool = False, sys_prefix: bool = False,
                        prefix: str | Path | None = None) -> Path:
    """Install the kernelspec ``rnnlab-cuda`` (this Python, ``RNNLAB_DEVICE=cuda``).

    Where, as with ``jupyter kernelspec install``: ``user`` (the user's Jupyter data
    directory), ``sys_prefix`` (this environment, e.g. the course's virtual environment) or
    ``prefix`` (``PATH/share/jupyter/kernels``); at most one of them, the system-wide location
    when none is given. Replaces an earlier ``rnnlab-cuda`` there. Returns the kernelspec's
    directory.

    Raises:
        TypeError: ``user`` or ``sys_prefix`` is not a bool, ``prefix`` not a path.
        ValueError: more than one location was given.
    """
    check_bool("user", user)
    check_bool("sys_prefix", sys_prefix)
    if prefix is not None:
        check_type("prefix", prefix, (str, Path), "a str, a pathlib.Path or None")
    chosen = [name for name, value in (("user", user), ("sys_prefix", sys_prefix),
                                       ("prefix", prefix)) if value]
    if len(chosen) > 1:
        raise ValueError(f"location: expected at most one of user, sys_prefix, prefix, "
                         f"got {', '.join(chosen)}")
    from ipykernel.kernelspec import install

    if sys_prefix:
        prefix = sys.prefix
    path = install(user=user, prefix=None if prefix is None else str(prefix),
                   kernel_name=CUDA_KERNEL, display_name=_DISPLAY_NAME,
                   env={"RNNLAB_DEVICE": "cuda"})
    return Path(path)


def list_kernels() -> list[dict[str, str]]:
    """Every kernelspec Jupyter finds: name, display name, directory and ``RNNLAB_DEVICE``.

    ``RNNLAB_DEVICE`` is what the kernel sets (empty when it sets nothing, i.e. the notebook
    uses a GPU when one is available and the CPU otherwise). Sorted by name.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = []
    for name, found in sorted(KernelSpecManager().get_all_specs().items()):
        spec = found.get("spec", {})
        kernels.append({"name": name, "display_name": spec.get("display_name", ""),
                        "path": found.get("resource_dir", ""),
                        "device": spec.get("env", {}).get("RNNLAB_DEVICE", "")})
    return kernels
