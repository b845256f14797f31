"""Ending the grader's child processes: a tree, its process group, and the wait for it.

Kernels and kernel templates run in sessions of their own (``start_new_session``), so their
process group holds what they started; what left the group is found as a descendant while the
parent is alive. psutil (in ``rnnlab[grading]``) finds the descendants; without it only the
process group is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess

__all__ = ["descendants", "kill_all", "end"]


def descendants(pid: int) -> list:
    """``pid``'s descendants as psutil processes (empty without psutil or once it is gone)."""
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:          # psutil missing, or the process is already gone
        return []


def kill_all(processes: list) -> None:
    """SIGKILL each psutil process (psutil checks that it is still the same process)."""
    for process in processes:
        try:
            process.kill()
        except Exception:      # already gone
            pass


def end(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL ``process``'s process group (it leads one) and reap it within ``timeout`` s."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
