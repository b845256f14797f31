"""The hostile-student suite and the kernel template's, once more, as the unprivileged user
`nobody`.

As root the grader fences each kernel with control groups; as a normal user it falls back to
rlimits and CPU pinning, and bwrap runs without privilege. CI runs pytest as root, so this test
runs `test_grading_hostile.py` and `test_grading_template.py` again as `nobody` (setpriv), with a
temporary directory and HOME of its own. A Python installation that `nobody` cannot reach
(pyenv under a 0700 /root, as on the CI machines) is made reachable the only way that changes
nothing on the host: pytest runs in a mount namespace where each unreachable directory above it
is an empty tmpfs holding a read-only bind of just that installation. When pytest itself runs
unprivileged, the suites have already run as that user and this test skips.
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
    highest ancestor they cannot traverse, traversable directories down to the path (bwrap
    would make them 0700), and a read-only bind of the path itself."""
    options: list[str] = []
    made: set[Path] = set()
    for path in sorted({os.path.realpath(p) for p in paths}):
        ancestors = list(reversed(Path(path).parents))
        blocked = next((a for a in ancestors if a != Path("/") and not _reachable_by_others(a)),
                       None)
        if blocked is None:
            continue
        if blocked not in made:
            options += ["--tmpfs", str(blocked)]
            made.add(blocked)
        for directory in ancestors[ancestors.index(blocked) + 1:]:
            if directory not in made:
                options += ["--perms", "0755", "--dir", str(directory)]
                made.add(directory)
        options += ["--ro-bind", path, path]
    return options


def test_hostile_suite_passes_as_nobody():
    home = Path(tempfile.mkdtemp(prefix="rnnlab-nobody-"))
    try:
        os.chown(home, NOBODY, NOBODY)
        needed = [*python_paths(), os.path.dirname(os.path.realpath(sys.executable)), str(ROOT)]
        as_nobody = [
            shutil.which("bwrap"), "--dev-bind", "/", "/", *_reveal(needed),
            "--chdir", str(ROOT), "--setenv", "HOME", str(home), "--setenv", "TMPDIR", str(home),
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--die-with-parent", "--",
            shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--", sys.executable]
        seen = subprocess.run([*as_nobody, "-c", "import os, sys; print(os.getuid(), "
                               "sys.base_prefix)"], capture_output=True, text=True, timeout=120)
        assert seen.stdout.split() == [str(NOBODY), sys.base_prefix], seen.stderr
        result = subprocess.run([*as_nobody, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 "--basetemp", str(home / "pytest"),
                                 str(ROOT / "tests" / "test_grading_hostile.py"),
                                 str(ROOT / "tests" / "test_grading_template.py")],
                                capture_output=True, text=True, timeout=1500)
        report = result.stdout[-4000:] + result.stderr[-2000:]
        assert result.returncode == 0, report
        assert " passed" in result.stdout and "failed" not in result.stdout, report
    finally:
        shutil.rmtree(home, ignore_errors=True)
