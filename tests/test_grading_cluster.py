"""`rnnlab grade --scheduler`: a real Dask cluster, started as users start one (a scheduler file,
two worker processes), grades a small class into the same CSV as local worker processes, even
when a worker is killed in the middle of a student."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grading_kit import CORRECT, FIXTURE, SIGMOID, make_submission, released_lab, write

from rnnlab.cli import main

distributed = pytest.importorskip("distributed")

DASK = str(Path(sys.executable).with_name("dask"))
SLOW = "import time\n\n" + SIGMOID.replace("def sigmoid(x):\n",
                                            "def sigmoid(x):\n    time.sleep(3)\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    file = base / "scheduler.json"
    logs = [open(base / f"{name}.log", "wb") for name in ("scheduler", "workers")]  # noqa: SIM115
    processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--dashboard-address", ":0", "--scheduler-file", str(file)],
                                  stdout=logs[0], stderr=subprocess.STDOUT,
                                  start_new_session=True)]
    try:
        deadline = time.monotonic() + 120
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        processes.append(subprocess.Popen(
            [DASK, "worker", "--scheduler-file", str(file), "--nworkers", "2", "--nthreads", "1",
             "--no-dashboard"], stdout=logs[1], stderr=subprocess.STDOUT,
            start_new_session=True))
        client = distributed.Client(scheduler_file=str(file), set_as_default=False)
        client.wait_for_workers(2, timeout=180)
        yield file, client
        client.close()
    finally:
        for process in reversed(processes):          # workers first: nannies and their children
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        for log in logs:
            log.close()


def _kill_the_worker_grading(client, student: str, grader: subprocess.Popen,
                             timeout: float = 300.0) -> bool:
    """SIGKILL the worker process that holds ``student``'s task, 2 s after it got it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and grader.poll() is None:
        for address, keys in client.processing().items():
            if any(str(key).endswith(f"-{student}") for key in keys):
                time.sleep(2.0)
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_cluster_writes_the_local_csv_even_when_a_worker_dies_mid_student(cluster, tmp_path):
    file, client = cluster
    lab = released_lab()
    write(tmp_path / "subs", "honest", "fx_lab.ipynb", make_submission(lab, CORRECT))
    write(tmp_path / "subs", "blank", "fx_lab.ipynb", lab)
    write(tmp_path / "subs", "slow", "fx_lab.ipynb",
          make_submission(lab, {**CORRECT, "answer-sigmoid": SLOW}))
    common = [str(tmp_path / "subs"), "--source", str(FIXTURE), "--memory", "3G", "--quiet",
              "--similarity", "0"]
    assert main(["grade", *common, "--jobs", "2", "--out", str(tmp_path / "local.csv")]) == 0
    remote = subprocess.Popen([sys.executable, "-m", "rnnlab", "grade", *common, "--scheduler",
                               str(file), "--out", str(tmp_path / "cluster.csv")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = _kill_the_worker_grading(client, "slow", remote)
    out, err = remote.communicate(timeout=900)
    assert remote.returncode == 0, err
    assert killed
    local = (tmp_path / "local.csv").read_bytes()
    assert (tmp_path / "cluster.csv").read_bytes() == local
    rows = local.decode().splitlines()[1:]
    assert len(rows) == 3 * 6 and not any(row.endswith("error") for row in rows)
    assert sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values()) >= 2
