"""``rnnlab grade --scheduler ADDRESS``: each student's grading is one task on a Dask cluster.

The cluster is the instructor's: ``dask scheduler`` and ``dask worker`` processes on machines
that have rnnlab (with the ``grading`` extra) and bubblewrap installed, as the instructor guide
shows (plain ``dask worker``, dask-jobqueue on Slurm, dask-kubernetes). ``ADDRESS`` is the
scheduler's address (``tcp://host:8786``) or the path of its ``--scheduler-file``.

A task grades one student exactly as a local worker process does
(:func:`rnnlab.grading.batch.grade_group`), in the sandbox the *worker's* machine offers, and
returns plain results; the grader writes the same CSV as a local run. A worker that dies
mid-student is Dask's to handle: the scheduler gives the task to another worker (up to its
``distributed.scheduler.allowed-failures``, 3 by default), so the student is graded again from
the start, and their rows are taken once, from the one result that comes back. A student whose
task keeps killing workers gets the flag ``error`` on every test, as a crashed local worker does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

from rnnlab.grading.limits import Limits
from rnnlab.grading.results import NotebookResult

__all__ = ["client_for", "grade_on_cluster"]


def client_for(scheduler: str):
    """A ``distributed.Client`` for a scheduler address or scheduler file.

    Raises:
        ImportError: ``dask[distributed]`` is not installed (``pip install rnnlab[cluster]``).
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError("scheduler: grading on a cluster needs dask[distributed]; install "
                          "it with `pip install 'rnnlab[cluster]'`") from exc
    if os.path.isfile(scheduler):
        return Client(scheduler_file=scheduler, set_as_default=False)
    return Client(scheduler, set_as_default=False)


def _task(group, labs: list[str], limits: Limits, sandbox: str, tmp_root: str | None,
          template: bool):
    """On a worker: grade one student; ``(results, isolated)``."""
    from rnnlab.grading.batch import grade_group

    return grade_group(group, labs, limits, sandbox, tmp_root, template)


def grade_on_cluster(scheduler: str, groups: list, labs: list[str], limits: Limits,
                     sandbox: str, tmp_root: str | None, template: bool,
                     failed: Callable[[tuple, str], list[NotebookResult]]
                     ) -> Iterator[tuple[list[NotebookResult], bool | None]]:
    """Yield ``(results, isolated)`` per student as their tasks finish (``isolated`` is
    ``None`` for a student whose task failed; ``failed(group, reason)`` gives their rows)."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    client = client_for(scheduler)
    try:
        futures = {}
        for group in groups:
            key = f"rnnlab-grade-{run}-{group[0]}"
            futures[client.submit(_task, group, labs, limits, sandbox, tmp_root, template,
                                  key=key, pure=False)] = group
        for future in as_completed(list(futures), loop=client.loop):
            try:
                yield future.result()
            except Exception as exc:      # the task failed on every worker it was given
                from rnnlab.grading.checker import SourceError

                if isinstance(exc, SourceError):
                    raise
                yield failed(futures[future], type(exc).__name__), None
    finally:
        client.close()
