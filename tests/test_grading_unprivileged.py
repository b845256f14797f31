"""The hostile-student suite once more, as the unprivileged user `nobody`.

As root the grader fences each kernel with control groups; as a normal user it falls back to
rlimits and CPU pinning, and bwrap runs without privilege. CI runs pytest as root, so this test
runs `test_grading_hostile.py` again as `nobody` (setpriv), with a temporary directory and HOME
of its own. A Python installation that `nobody` cannot reach (pyenv under a 0700 /root, as on
the CI machines) is made reachable the only way that changes nothing on the host: pytest runs in
a mount namespace where each unreachable directory above it is an empty tmpfs holding a
read-only bind of just that installation. When pytest itself runs unprivileged, the suite has
already run as that user and this test skips.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from grading_kit import ROOT

from rnnlab.grading.sandbox import python_paths, support

NOBODY = 65534

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="pytest runs unprivileged: the hostile suite "
                                                 "already ran as this user"),
    pytest.mark.skipif(not (support().bwrap and support().seccomp),
                       reason="needs bubblewrap and libseccomp2"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)"),
]


def _reachable_by_others(directory: Path) -> bool:
    return bool(directory.stat().st_mode & stat.S_IXOTH)


def _reveal(paths: list[str]) -> list[str]:
    """bwrap options that make each of ``paths`` reachable by others: an empty tmpfs over the
    highest ancestor they cannot traverse, and a read-only bind of the path inside it."""
    options: list[str] = []
    covered: set[Path] = set()
    for path in sorted({os.path.realpath(p) for p in paths}):
        blocked = next((a for a in reversed(Path(path).parents)
                        if a != Path("/") and not _reachable_by_others(a)), None)
        if blocked is None:
            continue
        if blocked not in covered:
            options += ["--tmpfs", str(blocked)]
            covered.add(blocked)
        options += ["--ro-bind", path, path]
    return options


def test_hostile_suite_passes_as_nobody():
    home = Path(tempfile.mkdtemp(prefix="rnnlab-nobody-"))
    try:
        os.chown(home, NOBODY, NOBODY)
        needed = [*python_paths(), os.path.dirname(os.path.realpath(sys.executable)), str(ROOT)]
        command = [
            shutil.which("bwrap"), "--dev-bind", "/", "/", *_reveal(needed),
            "--chdir", str(ROOT), "--setenv", "HOME", str(home), "--setenv", "TMPDIR", str(home),
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--die-with-parent", "--",
            shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--basetemp", str(home / "pytest"), "-m", "slow",
            str(ROOT / "tests" / "test_grading_hostile.py"),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=1500)
        report = result.stdout[-4000:] + result.stderr[-2000:]
        assert result.returncode == 0, report
        assert " passed" in result.stdout and "skipped" not in result.stdout, report
    finally:
        shutil.rmtree(home, ignore_errors=True)
