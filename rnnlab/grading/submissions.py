"""Reading what students submitted, trusting nothing about it.

``SUBMISSIONS/<student>/<lab>.ipynb``: every entry of SUBMISSIONS that is a directory or a
symbolic link is a student (hidden names and plain files are skipped). A submission is read only
if it is a regular file in a real directory — never through a link, never a pipe or a device —
of at most :data:`MAX_NOTEBOOK_BYTES`, and used only if it is a valid nbformat 4 notebook. What
is wrong with it becomes the lab's flag for that student, and grading goes on:

==================  ==================================================================
``not_submitted``   no such file
``not_regular``     the file is a link, a pipe, a device or a directory, or the student's
                    folder is a link (nothing is opened through it)
``unreadable``      cannot be read, is larger than the limit, is not UTF-8 JSON
``invalid``         JSON, but not a valid notebook (a cell without ``cell_type``, a source
                    that is a number or ``null``, …)
==================  ==================================================================
"""

from __future__ import annotations

import errno
import json
import os
import stat
import warnings
from pathlib import Path

import nbformat

__all__ = ["MAX_NOTEBOOK_BYTES", "students", "hidden_folders", "read_submission",
           "read_regular", "NotRegular"]

MAX_NOTEBOOK_BYTES = 64 * 2**20


class NotRegular(OSError):
    """The path is a link, a pipe, a device or a directory: it was not read."""


def read_regular(path: str | Path, limit: int, dir_fd: int | None = None) -> bytes:
    """The bytes of a regular file, never following a link and never blocking on a pipe.

    Raises:
        NotRegular: ``path`` is a symbolic link or not a regular file.
        OSError: it cannot be read, or holds more than ``limit`` bytes (``EFBIG``).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise NotRegular(errno.ELOOP, "a symbolic link", str(path)) from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegular(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        chunks, size = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def students(submissions: str | Path) -> list[str]:
    """The students of a submissions directory, sorted (see the module docstring)."""
    submissions = Path(submissions)
    if not submissions.is_dir():
        raise ValueError(f"submissions: expected a directory of student folders, got "
                         f"{submissions}")
    names = []
    for entry in os.scandir(submissions):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() or entry.is_dir(follow_symlinks=False):
            names.append(entry.name)
    return sorted(names)


def hidden_folders(submissions: str | Path) -> list[str]:
    """The folders of SUBMISSIONS whose names start with ``.``, sorted: they are not graded
    (``.ipynb_checkpoints``, ``.git``), and the command line names them so that a student's
    folder that merely looks hidden is not dropped in silence."""
    return sorted(entry.name for entry in os.scandir(submissions)
                  if entry.name.startswith(".")
                  and (entry.is_symlink() or entry.is_dir(follow_symlinks=False)))


def _validate(notebook) -> None:
    nbformat.validate(notebook)
    for cell in notebook.cells:           # what the grader reads must be what it expects
        if not isinstance(cell.get("source"), str) or not isinstance(cell.get("metadata"), dict):
            raise ValueError("a cell without a text source or metadata")


def read_submission(folder: str | Path, name: str
                    ) -> tuple[nbformat.NotebookNode | None, str | None]:
    """``(notebook, None)``, or ``(None, flag)`` for a submission that cannot be used."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, "not_submitted"
    except OSError as exc:
        return None, "not_regular" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else "unreadable"
    try:
        raw = read_regular(name, MAX_NOTEBOOK_BYTES, dir_fd=dir_fd)
    except FileNotFoundError:
        return None, "not_submitted"
    except NotRegular:
        return None, "not_regular"
    except OSError:
        return None, "unreadable"
    finally:
        os.close(dir_fd)
    try:
        text = raw.decode("utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "unreadable"
    if not isinstance(data, dict):
        return None, "invalid"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(text, as_version=4)
            _validate(notebook)
    except Exception:      # nbformat raises validation, key and conversion errors alike
        return None, "invalid"
    return notebook, None
