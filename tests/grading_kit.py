"""What the grading tests share: the fixture lab, submissions as a student makes them, and
snapshots of the host's files and of this test process's children."""

from __future__ import annotations

import copy
import os
import site
import stat
from pathlib import Path

import nbformat
import psutil

import rnnlab
from rnnlab.grading.labs import release_notebook
from rnnlab.grading.notebook import read_notebook

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "grading" / "solutions"
SOURCE = FIXTURE / "fx_lab.ipynb"

SIGMOID = "def sigmoid(x):\n    return 1.0 / (1.0 + torch.exp(-x))"
RADIUS = "def spectral_radius(weight):\n    return torch.linalg.eigvals(weight).abs().max().item()"
CHOICE = 'answer_choice = "b"'
TANH = "def tanh_grad(x):\n    return 1 - torch.tanh(x) ** 2"
CLAMP = "def clamp_all(values, bound):\n    return [v.clamp(-bound, bound) for v in values]"
ROTATION = ("def rotation(theta):\n    c, s = math.cos(theta), math.sin(theta)\n"
            "    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)")
CORRECT = {"answer-sigmoid": SIGMOID, "answer-radius": RADIUS, "answer-choice": CHOICE,
           "answer-tanh_grad": TANH, "answer-clamp_all": CLAMP, "answer-rotation": ROTATION}
FULL = {"test-sigmoid": 2, "test-radius": 3, "test-choice": 1, "test-tanh_grad": 2,
        "test-clamp_all": 2, "test-rotation": 2}
ZERO = dict.fromkeys(FULL, 0)

_SKIP = {"__pycache__", ".pytest_cache", ".ruff_cache", "_build", ".venv"}


def released_lab() -> nbformat.NotebookNode:
    return release_notebook(read_notebook(SOURCE), "fx_lab")


def make_submission(lab: nbformat.NotebookNode, answers: dict[str, str]
                    ) -> nbformat.NotebookNode:
    """The released ``lab`` with the given cells' sources replaced, as a student would."""
    notebook = copy.deepcopy(lab)
    for cell in notebook.cells:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if grade_id in answers:
            cell.source = answers[grade_id]
    return notebook


def write(directory: Path, student: str, name: str, notebook) -> Path:
    (directory / student).mkdir(parents=True, exist_ok=True)
    path = directory / student / name
    nbformat.write(notebook, path)
    return path


def host_snapshot() -> dict[str, tuple]:
    """(size, mtime, ctime, mode) of every file of the repository, the installed rnnlab package
    and site-packages (caches aside): a write, even one that restores the mtime, changes the
    ctime; a new file is a new key. Git's object store is left out: its files are immutable and
    shared (hard links) with every local clone, whose link counts change their ctime."""
    roots = {ROOT, Path(rnnlab.__file__).resolve().parent,
             *(Path(p) for p in site.getsitepackages())}
    snapshot: dict[str, tuple] = {}
    for root in sorted(roots):
        for directory, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in _SKIP
                       and not (d == "objects" and directory.endswith(".git"))]
            for name in (*dirs, *files):
                path = os.path.join(directory, name)
                try:
                    info = os.lstat(path)
                except OSError:
                    continue
                snapshot[path] = (info.st_size if stat.S_ISREG(info.st_mode) else 0,
                                  info.st_mtime_ns, info.st_ctime_ns, info.st_mode)
    return snapshot


def children() -> list[str]:
    """Command lines of this process's live descendants (zombies, and the resource tracker that
    multiprocessing keeps for the life of this process, aside)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            command = " ".join(process.cmdline())
            if process.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in command:
                found.append(command)
        except psutil.Error:
            pass
    return found
