"""The kernel template: kernels forked from one pre-imported process, one after the other.

Each test plays a student whose kernel attacks what the template shares between kernels — the
in-memory file systems, the template process itself, its pipes to the grader, objects that
outlive a process — and then checks that the next kernel forked from the same template (the next
student's) starts clean and works. The end-to-end grading with a template (every attack of
`test_grading_hostile.py`, as root and as `nobody`) is the default path of `rnnlab grade`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

import rnnlab
from rnnlab.grading import template as template_module
from rnnlab.grading.kernel import StudentKernel
from rnnlab.grading.limits import Limits
from rnnlab.grading.template import KernelTemplate, available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not available(), reason="needs bubblewrap and libseccomp2 (apt-get install bubblewrap "
                            "libseccomp2)")]

PLANT = (
    "import os\n"
    "open('/tmp/planted.py', 'w').write('STOLEN = 1')\n"
    "open('/dev/shm/planted', 'w').write('x')\n"
    "open('/run/rnnlab/planted', 'w').write('x')\n"
    "path = '/tmp/deep'\n"
    "for _ in range(300):\n"
    "    os.mkdir(path)\n"
    "    path += '/d'\n"
    "for top in ('/tmp/deep', '/tmp'):\n"
    "    os.chmod(top + '/d' if top == '/tmp/deep' else '/tmp/deep', 0)\n"
)
CLEAN = (
    "import os, sys\n"
    "seen = {d: sorted(os.listdir(d)) for d in ('/tmp', '/dev/shm', '/run/rnnlab')}\n"
    "try:\n"
    "    import planted\n"
    "    imported = True\n"
    "except ImportError:\n"
    "    imported = False\n"
    "import json\n"
    "json.dump({'seen': seen, 'imported': imported}, open('/run/rnnlab/clean.json', 'w'))\n"
)
REACH = (   # the template is this kernel's parent: its memory, files and pipes are out of reach
    "import ctypes, json, os\n"
    "parent = os.getppid()\n"
    "def refused(path, mode='rb'):\n"
    "    try:\n"
    "        open(path, mode).read(1)\n"
    "    except PermissionError:\n"
    "        return True\n"
    "    return False\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "ipc = {'shmget': libc.shmget(0, 4096, 0o1600), 'semget': libc.semget(0, 1, 0o1600),\n"
    "       'msgget': libc.msgget(0, 0o1600)}\n"
    "try:\n"
    "    os.fork()\n"
    "    forked = True\n"
    "except PermissionError:\n"
    "    forked = False\n"
    "json.dump({'mem': refused(f'/proc/{parent}/mem'),\n"
    "           'environ': refused(f'/proc/{parent}/environ'),\n"
    "           'fd': refused(f'/proc/{parent}/fd/1', 'wb'), 'ipc': ipc, 'forked': forked,\n"
    "           'stdin': os.readlink('/proc/self/fd/0')},\n"
    "          open('/run/rnnlab/reach.json', 'w'))\n"
)


@pytest.fixture
def template():
    # a short directory: the kernel's IPC socket paths must fit in 107 bytes, which pytest's
    # own temporary paths (long test names, a --basetemp) can exceed
    root = Path(tempfile.mkdtemp(prefix="tpl"))
    made = KernelTemplate(Limits(memory=3 * 2**30, scratch=64 * 2**20), cpus=[0],
                          tmp_root=str(root))
    yield made
    made.close()
    assert not list(root.iterdir())
    root.rmdir()


def _kernel(template: KernelTemplate) -> StudentKernel:
    kernel = StudentKernel(template.sandbox, startup_timeout=120, template=template)
    assert kernel.start(time.monotonic() + 120).status == "ok"
    return kernel


def _run(kernel: StudentKernel, code: str) -> str:
    return kernel.execute(code, time.monotonic() + 60).status


def _end(kernel: StudentKernel, template: KernelTemplate) -> None:
    kernel.kill()
    template.release()


def _read(template: KernelTemplate, name: str) -> dict:
    return json.loads((template.sandbox.ipc / name).read_text())


def _clean(template: KernelTemplate) -> None:
    kernel = _kernel(template)
    try:
        assert _run(kernel, CLEAN) == "ok"
        found = _read(template, "clean.json")
    finally:
        _end(kernel, template)
    assert found["imported"] is False
    assert not any("planted" in name or name in ("deep", "moved")
                   for names in found["seen"].values() for name in names), found


def test_a_kernel_finds_nothing_the_previous_kernel_left(template):
    kernel = _kernel(template)
    assert _run(kernel, PLANT) == "ok"
    assert (template.sandbox.ipc / "planted").exists()
    _end(kernel, template)
    assert not (template.sandbox.ipc / "planted").exists()
    _clean(template)
    assert template.starts == 1                # the same template served both kernels


def test_a_kernel_that_locks_the_shared_directory_leaves_the_next_one_a_clean_one(template):
    """Locked directories (a normal user's grader cannot list them) and a locked shared directory
    are emptied and given back their mode, or the next student's kernel would start with
    them."""
    mode = template.sandbox.ipc.stat().st_mode
    kernel = _kernel(template)
    code = ("import os\n"
            "for n in range(3):\n"
            "    os.makedirs(f'/run/rnnlab/locked{n}/inner')\n"
            "    open(f'/run/rnnlab/locked{n}/inner/planted', 'w').write('x')\n"
            "    os.chmod(f'/run/rnnlab/locked{n}/inner', 0)\n"
            "    os.chmod(f'/run/rnnlab/locked{n}', 0)\n"
            "os.chmod('/run/rnnlab', 0o500)\n")
    assert _run(kernel, code) == "ok"
    _end(kernel, template)
    assert template.sandbox.ipc.stat().st_mode == mode
    assert list(template.sandbox.ipc.iterdir()) == []
    _clean(template)
    assert template.starts == 1


def test_a_kernel_cannot_reach_the_template_or_keep_objects_alive(template):
    kernel = _kernel(template)
    try:
        assert _run(kernel, REACH) == "ok"
        found = _read(template, "reach.json")
        kernel_fds = {os.readlink(f"/proc/{kernel.process.pid}/fd/{fd}")
                      for fd in os.listdir(f"/proc/{kernel.process.pid}/fd")}
        pipes = {f"pipe:[{os.fstat(stream.fileno()).st_ino}]"
                 for stream in (template.process.stdin, template.process.stdout)}
    finally:
        _end(kernel, template)
    assert found["mem"] and found["environ"] and found["fd"]
    assert found["ipc"] == {"shmget": -1, "semget": -1, "msgget": -1}
    assert found["forked"] is False
    assert found["stdin"] == "/dev/null"
    assert len(pipes) == 2 and not kernel_fds & pipes


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_a_kernel_that_kills_or_stops_the_template_costs_only_a_new_template(
        template, signal_name, monkeypatch):
    monkeypatch.setattr(template_module, "SPAWN_TIMEOUT", 3.0)
    kernel = _kernel(template)
    code = PLANT + f"import signal\nos.kill(os.getppid(), signal.{signal_name})\n"
    assert _run(kernel, code) in ("ok", "died")     # a killed template takes its sandbox along
    _end(kernel, template)
    start = time.monotonic()
    _clean(template)
    assert template.starts == 2
    assert time.monotonic() - start < 3.0 + 120


def test_binds_under_tmp_survive_and_a_kernel_that_moves_them_costs_a_new_template(template):
    """A checkout under /tmp (CI's) is bound read-only into the sandbox's /tmp: the template
    keeps those binds when it empties /tmp, and a kernel that renames or locks the directories
    leading to them gets the next kernel a new template, not a broken Python."""
    package = os.path.dirname(os.path.abspath(rnnlab.__file__))
    if not package.startswith("/tmp/"):
        pytest.skip("the checkout is not under /tmp, so nothing of it is bound there")
    first = "/tmp/" + package.split("/")[2]
    kernel = _kernel(template)
    assert _run(kernel, PLANT) == "ok"
    _end(kernel, template)
    _clean(template)                           # binds kept, the rest emptied, same template
    assert template.starts == 1
    kernel = _kernel(template)
    code = f"import os\nos.chmod({first!r}, 0)\nos.rename({first!r}, '/tmp/moved')\n"
    assert _run(kernel, code) == "ok"
    _end(kernel, template)
    _clean(template)
    assert template.starts == 2


def test_a_lab_out_of_time_does_not_cost_the_template(template):
    _end(_kernel(template), template)
    late = StudentKernel(template.sandbox, startup_timeout=120, template=template)
    assert late.start(time.monotonic()).status == "timeout"    # the lab's clock is spent
    _end(late, template)
    _clean(template)
    assert template.starts == 1


def test_a_kernel_starts_in_a_fraction_of_a_fresh_kernels_time(template):
    start = time.monotonic()
    _end(_kernel(template), template)          # the first start imports torch in the template
    first = time.monotonic() - start
    start = time.monotonic()
    kernel = _kernel(template)
    later = time.monotonic() - start
    try:
        assert _run(kernel, "import torch\nassert torch.ones(2).sum().item() == 2") == "ok"
    finally:
        _end(kernel, template)
    assert later < first / 3, (first, later)


def test_grades_are_the_same_with_fresh_kernels(tmp_path):
    """The same class through `rnnlab grade`, with the template and with --fresh-kernels: the
    same CSV, byte for byte, though one student plants files and another kills its kernel."""
    from grading_kit import CORRECT, FIXTURE, make_submission, released_lab, write

    from rnnlab.cli import main

    lab = released_lab()
    planter = CORRECT["answer-choice"] + "\n" + PLANT
    killer = ("import os, signal\n\ndef sigmoid(x):\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    for student, answers in {"a_planter": {**CORRECT, "answer-choice": planter},
                             "b_solution": CORRECT, "c_killer": {**CORRECT,
                                                                 "answer-sigmoid": killer},
                             "d_untouched": {}}.items():
        write(tmp_path / "submissions", student, "fx_lab.ipynb", make_submission(lab, answers))
    for name, extra in (("template", []), ("fresh", ["--fresh-kernels"])):
        assert main(["grade", str(tmp_path / "submissions"), "--source", str(FIXTURE),
                     "--out", str(tmp_path / f"{name}.csv"), "--quiet", "--memory", "3G",
                     "--similarity", "0", *extra]) == 0
    template_csv = (tmp_path / "template.csv").read_text()
    assert template_csv == (tmp_path / "fresh.csv").read_text()
    assert "c_killer,fx_lab,test-sigmoid,0,2,kernel_died" in template_csv
    assert "b_solution,fx_lab,test-sigmoid,2,2," in template_csv
