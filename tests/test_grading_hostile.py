"""`rnnlab grade` against hostile students: every attack fails, nobody else loses a point.

One run of the CLI grades every submission below (the fixture lab: six answers worth
2 + 3 + 1 + 2 + 2 + 2 points) with two jobs and small limits, in a temporary directory of its
own; each test then checks one attack: the attacker's points and flags, every honest student's
points, and that the repository, the rnnlab package and site-packages are unchanged. The suite
runs as whoever runs pytest; `test_grading_unprivileged.py` runs it again as `nobody` when that
is root, so both the control-group and the rlimit fences are exercised.
"""

from __future__ import annotations

import csv
import os
import stat
import time
from pathlib import Path

import pytest
from grading_kit import (
    CHOICE,
    CORRECT,
    FIXTURE,
    FULL,
    RADIUS,
    SIGMOID,
    SOURCE,
    ZERO,
    children,
    host_snapshot,
    make_submission,
    released_lab,
    write,
)

from rnnlab.cli import main
from rnnlab.grading.report import read_details
from rnnlab.grading.sandbox import support

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (support().bwrap and support().seccomp),
    reason="needs bubblewrap and libseccomp2 (apt-get install bubblewrap libseccomp2)")]

CELL_TIMEOUT = 5.0
NOTEBOOK_TIMEOUT = 300.0        # generous: a restart on a loaded machine re-imports torch
MEMORY = "3G"
SCRATCH = 64 * 2**20
ROOT_RUN = os.geteuid() == 0

REMOUNT = (   # item 1: remount the read-only binds, plant a .pth, patch the grader
    "import ctypes, os, site, rnnlab\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "package = os.path.dirname(rnnlab.__file__)\n"
    "for target in [package, *site.getsitepackages()]:\n"
    "    libc.mount(None, target.encode(), None, 32 | 4096, None)   # MS_REMOUNT | MS_BIND\n"
    "with open(os.path.join(site.getsitepackages()[0], 'zz_evil.pth'), 'w') as f:\n"
    "    f.write('import torch; torch.tanh = torch.sigmoid\\n')\n"
    "with open(os.path.join(package, 'grading', 'runner.py'), 'a') as f:\n"
    "    f.write('\\nGRADER_FAILED = 0\\n')\n" + SIGMOID)
FENCED = (    # item 1, seen from inside: no privilege left
    "import ctypes, os\n"
    "status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "fenced = (status['CapEff'].strip() == '0' * 16 and status['NoNewPrivs'].strip() == '1'\n"
    "          and status['Seccomp'].strip() == '2' and os.getuid() == os.getgid() == 65534\n"
    "          and libc.unshare(0x10000000) == -1 and libc.mount(None, b'/usr', None,\n"
    "                                                            32 | 4096, None) == -1)\n"
    "answer_choice = 'b' if fenced else 'x'")
FILL = (      # item 4: the sandbox's in-memory file systems are small and / is read-only
    "import os\n"
    "def fill(directory):\n"
    "    written = 0\n"
    "    try:\n"
    "        with open(os.path.join(directory, 'fill'), 'wb') as f:\n"
    "            for _ in range(64):\n"
    "                f.write(b'x' * 2**24)\n"
    "                f.flush()\n"
    "                written += 2**24\n"
    "    except OSError:\n"
    "        pass\n"
    "    try:\n"
    "        os.remove(os.path.join(directory, 'fill'))\n"
    "    except OSError:\n"
    "        pass\n"
    "    return written\n"
    f"ok = fill('/dev/shm') <= {SCRATCH // 4} and fill('/tmp') <= {SCRATCH} \\\n"
    "     and fill('/') == 0 and fill('/etc') == 0\n"
    "answer_choice = 'b' if ok else 'x'")
DISK = (      # item 4: the only host directory it can write to is watched
    "for i in range(200):\n"
    "    with open(f'/run/rnnlab/fill-{i}', 'wb') as f:\n"
    "        f.write(b'x' * 2**24)\n" + CHOICE)
FORK = "import os\nchildren = [os.fork() for _ in range(3)]\n" + CHOICE
SETSID = ("import subprocess, sys\n"
          "hogs = [subprocess.Popen([sys.executable, '-c', 'while True: pass'],\n"
          "                         start_new_session=True) for _ in range(12)]\n" + CHOICE)
THREADS = ("import threading, time\n"
           "def spin():\n"
           "    a = torch.ones(200, 200)\n"
           "    while True:\n"
           "        a @ a\n"
           "for _ in range(12):\n"
           "    threading.Thread(target=spin, daemon=True).start()\n"
           "time.sleep(10**6)\n" + CHOICE)
BIG_HIDDEN = ("def rotation(theta):\n"     # item 5: a huge matrix only where the test is hidden
              "    if theta == 0.5:\n"
              "        c, s = math.cos(theta), math.sin(theta)\n"
              "        return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)\n"
              "    return torch.eye(2000, dtype=torch.float64)")
WIDE = "def rotation(theta):\n    return torch.ones(1, 40000, dtype=torch.float64)"
LISTS = "def rotation(theta):\n    return [[] for _ in range(150_000)]"
MUTATE = ("def clamp_all(values, bound):\n"      # item 6: changes its input in place
          "    for v in values:\n"
          "        v.clamp_(-bound, bound)\n"
          "    return values")
LIARS = ("close = max_abs_diff = lambda *a, **k: True\n"   # item 6: its own comparison helpers
         "torch.allclose = lambda *a, **k: True\n"
         "def tanh_grad(x):\n    return torch.zeros_like(x)")
AUTOGRAD = ("def tanh_grad(x):\n"                          # item 6/7: what the lab forbids
            "    leaf = x.detach().clone().requires_grad_(True)\n"
            "    return torch.autograd.grad(torch.tanh(leaf).sum(), leaf)[0]")
SILENCE = ("import sys\n"
           "def tanh_grad(x):\n"
           "    sys.setprofile(None)\n"
           "    leaf = x.detach().clone().requires_grad_(True)\n"
           "    torch.tanh(leaf).sum().backward()\n"
           "    return leaf.grad")
LEAK_RADIUS = ("SEEN = []\n"                                # item 8: hidden inputs into feedback
               "def spectral_radius(weight):\n"
               "    SEEN.append(tuple(weight.shape))\n"
               "    return torch.linalg.eigvals(weight).abs().max().item()")
LEAK_CHOICE = "answer_choice = f'<b>LEAK {SEEN}</b> [x](http://evil.example)'"
LEAK_TANH = ("def tanh_grad(x):\n"
             "    raise ValueError(f'LEAK {SEEN} <script>alert(1)</script>')")
ESCAPE_MARK = f"sleep {4000 + os.getpid() % 1000}.25"

STUDENTS = {
    "solution": CORRECT,
    "untouched": {},
    "alternative": {
        "answer-sigmoid": "def sigmoid(x):\n    return torch.special.expit(x)",
        "answer-radius": "import numpy as np\n\ndef spectral_radius(weight):\n"
                         "    return float(np.abs(np.linalg.eigvals(weight.numpy())).max())",
        "answer-choice": 'answer_choice = "abc"[1]',
        "answer-tanh_grad": "def tanh_grad(x):\n    return torch.cosh(x) ** -2",
        "answer-clamp_all": "def clamp_all(values, bound):\n"
                            "    return [torch.clamp(v, min=-bound, max=bound) for v in values]",
        "answer-rotation": "def rotation(theta):\n"
                           "    t = torch.tensor(theta, dtype=torch.float64)\n"
                           "    return torch.stack([torch.stack([t.cos(), -t.sin()]),\n"
                           "                        torch.stack([t.sin(), t.cos()])])",
    },
    "root_escalation": {**CORRECT, "answer-sigmoid": REMOUNT},
    "fence_probe": {**CORRECT, "answer-choice": FENCED},
    "shm_filler": {**CORRECT, "answer-choice": FILL},
    "disk_filler": {**CORRECT, "answer-choice": DISK},
    "forker": {**CORRECT, "answer-choice": FORK},
    "setsid_hog": {**CORRECT, "answer-choice": SETSID},
    "thread_hog": {**CORRECT, "answer-choice": THREADS},
    "big_hidden": {**CORRECT, "answer-rotation": BIG_HIDDEN},
    "wide_result": {**CORRECT, "answer-rotation": WIDE},
    "list_bomb": {**CORRECT, "answer-rotation": LISTS},
    "mutator": {**CORRECT, "answer-clamp_all": MUTATE},
    "lying_helpers": {**CORRECT, "answer-tanh_grad": LIARS},
    "autograd_user": {**CORRECT, "answer-tanh_grad": AUTOGRAD},
    "profiler_off": {**CORRECT, "answer-tanh_grad": SILENCE},
    "leaker": {**CORRECT, "answer-radius": LEAK_RADIUS, "answer-choice": LEAK_CHOICE,
               "answer-tanh_grad": LEAK_TANH},
    "escaper": {**CORRECT, "answer-sigmoid": (
        "import subprocess\n"
        f"subprocess.Popen(['/bin/sh', '-c', '{ESCAPE_MARK} &'], start_new_session=True).wait()\n"
        + SIGMOID)},
    # the attacks the grader already withstood
    "cheater": {      # patches what tests use, silences tracebacks, answers nothing
        "answer-sigmoid": "import builtins, numpy, numpy.testing, torch, torch.testing\n"
                          "from IPython.core.interactiveshell import InteractiveShell\n"
                          "InteractiveShell.showtraceback = lambda *a, **k: None\n"
                          "get_ipython().showtraceback = lambda *a, **k: None\n"
                          "torch.allclose = torch.equal = lambda *a, **k: True\n"
                          "torch.testing.assert_close = lambda *a, **k: None\n"
                          "numpy.testing.assert_allclose = lambda *a, **k: None\n"
                          "builtins.AssertionError = type('Nope', (Exception,), {})\n"
                          "def sigmoid(x):\n    raise NotImplementedError()",
        "answer-choice": 'answer_choice = "z"',
    },
    "always_equal": {  # results whose __eq__ is always True
        "answer-sigmoid": "def sigmoid(x):\n    return object.__new__(type('A', (), {"
                          "'__eq__': lambda s, o: True, '__bool__': lambda s: True}))",
        "answer-radius": "class F(float):\n    def __eq__(self, other): return True\n"
                         "    def __sub__(self, other): return F(0.0)\n"
                         "    def __abs__(self): return F(0.0)\n"
                         "def spectral_radius(weight):\n    return F(0.5)",
        "answer-choice": "class S(str):\n    def __eq__(self, other): return True\n"
                         "    __hash__ = str.__hash__\nanswer_choice = S('q')",
    },
    "reader": {        # looks for the solutions, the hidden tests and other submissions
        "answer-sigmoid": f"def sigmoid(x):\n    open({str(SOURCE)!r}).read()\n"
                          "    return torch.sigmoid(x)",
        "answer-radius": f"import os\nFOUND = os.listdir({str(FIXTURE)!r})\n{RADIUS}",
        "answer-choice": f"import os\nanswer_choice = 'b' if os.path.exists({str(SOURCE)!r}) "
                         "else 'x'",
    },
    "looper": {**CORRECT, "answer-sigmoid": "def sigmoid(x):\n    while True:\n        pass"},
    "exiter": {**CORRECT, "answer-radius": "import os\n\ndef spectral_radius(weight):\n"
                                           "    os._exit(0)"},
    "killer": {**CORRECT, "answer-sigmoid": "import os, signal\n\ndef sigmoid(x):\n"
                                            "    os.kill(os.getpid(), signal.SIGKILL)"},
    "memory_hog": {**CORRECT,
                   "answer-radius": "def spectral_radius(weight):\n"
                                    "    hog = [torch.empty(2**28, dtype=torch.uint8)"
                                    " for _ in range(64)]\n"
                                    "    return float(len(hog))",
                   "answer-choice": "hog = bytearray(16 * 2**30)\nanswer_choice = 'b'"},
    "flooder": {**CORRECT, "answer-choice": "while True:\n    print('x' * 100_000)"},
    "sleeper": {**CORRECT,
                "answer-sigmoid": "def sigmoid(x):   # right on [-5, 5], wrong when it saturates\n"
                                  "    return torch.where(x.abs() > 100, 0.5, torch.sigmoid(x))",
                "answer-radius": "import time\n\ndef spectral_radius(weight):\n"
                                 "    time.sleep(10**6)"},
    "tamperer": {"answer-sigmoid": SIGMOID,
                 "test-sigmoid": "assert False", "test-radius": "pass",
                 "setup": "device = 'cuda'"},
}
HONEST = {"solution": FULL, "alternative": FULL, "untouched": ZERO}
# student: (points per test, notebook flags, {test: flags of that test}); FULL where not said
EXPECTED = {
    **{name: (points, "", {}) for name, points in HONEST.items()},
    "root_escalation": ({**FULL, "test-sigmoid": 0}, "error", {}),
    "fence_probe": (FULL, "", {}),
    "bad_number": (ZERO, "invalid", {}),
    "bad_no_type": (ZERO, "invalid", {}),
    "bad_null_source": (ZERO, "invalid", {}),
    "garbage": (ZERO, "unreadable", {}),
    "eve": (ZERO, "not_regular", {}),
    "mallory": (ZERO, "not_regular", {}),
    "linked_folder": (ZERO, "not_regular", {}),
    "piper": (ZERO, "not_regular", {}),
    **({"device": (ZERO, "not_regular", {})} if ROOT_RUN else {}),
    "shm_filler": (FULL, "", {}),
    "disk_filler": ({**FULL, "test-choice": 0}, "memory", {}),
    "forker": ({**FULL, "test-choice": 0}, "error", {}),
    "setsid_hog": ({**FULL, "test-choice": 0}, "error", {}),
    "thread_hog": ({**FULL, "test-choice": 0}, "timeout", {}),
    "escaper": ({**FULL, "test-sigmoid": 0}, "error", {}),
    "big_hidden": ({**FULL, "test-rotation": 0}, "", {"test-rotation": "error"}),
    "wide_result": ({**FULL, "test-rotation": 0}, "", {"test-rotation": "error"}),
    "list_bomb": ({**FULL, "test-rotation": 0}, "", {"test-rotation": "error"}),
    "mutator": ({**FULL, "test-clamp_all": 0}, "", {}),
    "lying_helpers": ({**FULL, "test-tanh_grad": 0}, "", {}),
    "autograd_user": ({**FULL, "test-tanh_grad": 0}, "", {"test-tanh_grad": "forbidden_call"}),
    "profiler_off": ({**FULL, "test-tanh_grad": 0}, "", {"test-tanh_grad": "forbidden_call"}),
    "leaker": ({**FULL, "test-choice": 0, "test-tanh_grad": 0}, "",
               {"test-tanh_grad": "error"}),
    "cheater": (ZERO, "", {}),
    "always_equal": (ZERO, "", {"test-sigmoid": "error", "test-radius": "error",
                                "test-choice": "error"}),
    "reader": (ZERO, "error", {"test-sigmoid": "error"}),
    "looper": ({**FULL, "test-sigmoid": 0}, "", {"test-sigmoid": "timeout"}),
    "exiter": ({**FULL, "test-radius": 0}, "", {"test-radius": "kernel_died"}),
    "killer": ({**FULL, "test-sigmoid": 0}, "", {"test-sigmoid": "kernel_died"}),
    "memory_hog": ({**FULL, "test-radius": 0, "test-choice": 0}, "memory",
                   {"test-radius": "memory"}),
    "flooder": ({**FULL, "test-choice": 0}, "timeout", {}),
    "sleeper": ({**FULL, "test-sigmoid": 0, "test-radius": 0}, "", {"test-radius": "timeout"}),
    "tamperer": ({**ZERO, "test-sigmoid": 2}, "tampered", {}),
    "deleter": ({**FULL, "test-sigmoid": 0, "test-radius": 0}, "missing",
                {"test-sigmoid": "error"}),
}
EARLIER = ("cheater", "always_equal", "reader", "looper", "exiter", "killer", "memory_hog",
           "flooder", "sleeper", "tamperer", "deleter")


def _malformed(base: Path, lab) -> None:
    """Item 2: a source that is a number, a cell without a type, a locked cell's null source."""
    import json

    import nbformat

    good = json.loads(nbformat.writes(make_submission(lab, CORRECT)))
    cases = {"bad_number": (3, "source", 42), "bad_no_type": (3, "cell_type", None),
             "bad_null_source": (0, "source", None)}
    for student, (index, key, value) in cases.items():
        data = json.loads(json.dumps(good))
        if value is None and key == "cell_type":
            del data["cells"][index][key]
        else:
            data["cells"][index][key] = value
        (base / student).mkdir()
        (base / student / "fx_lab.ipynb").write_text(json.dumps(data))
    (base / "garbage").mkdir()
    (base / "garbage" / "fx_lab.ipynb").write_bytes(b"\x89PNG not a notebook")


def _links(base: Path) -> None:
    """Item 3: links to the solution and to another student's notebook, a linked folder, a
    FIFO and (as root) a device."""
    (base / "eve").mkdir()
    (base / "eve" / "fx_lab.ipynb").symlink_to(SOURCE)
    (base / "mallory").mkdir()
    (base / "mallory" / "fx_lab.ipynb").symlink_to(base / "solution" / "fx_lab.ipynb")
    (base / "linked_folder").symlink_to(FIXTURE, target_is_directory=True)
    (base / "piper").mkdir()
    os.mkfifo(base / "piper" / "fx_lab.ipynb")
    if ROOT_RUN:
        (base / "device").mkdir()
        os.mknod(base / "device" / "fx_lab.ipynb", 0o600 | stat.S_IFCHR, os.makedev(1, 3))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Grade every submission once, through the CLI, with two jobs."""
    base = tmp_path_factory.mktemp("hostile")
    lab = released_lab()
    submissions = base / "submissions"
    for student, answers in STUDENTS.items():
        write(submissions, student, "fx_lab.ipynb", make_submission(lab, answers))
    deleted = make_submission(lab, {**CORRECT, "answer-sigmoid": "def sigmoid(x):\n"
                                                                 "    raise ValueError('nope')"})
    deleted.cells = [c for c in deleted.cells
                     if c.metadata["nbgrader"]["grade_id"] != "answer-radius"]
    write(submissions, "deleter", "fx_lab.ipynb", deleted)
    _malformed(submissions, lab)
    _links(submissions)
    sandboxes = base / "sandboxes"
    sandboxes.mkdir()
    before = host_snapshot()
    start = time.monotonic()
    code = main(["grade", str(submissions), "--source", str(FIXTURE), "--out",
                 str(base / "grades.csv"), "--jobs", "2", "--cell-timeout", str(CELL_TIMEOUT),
                 "--notebook-timeout", str(NOTEBOOK_TIMEOUT), "--memory", MEMORY,
                 "--scratch", str(SCRATCH), "--tmp-dir", str(sandboxes),
                 "--feedback", str(base / "feedback"), "--quiet"])
    seconds = time.monotonic() - start
    after = host_snapshot()
    changed = sorted(set(before.items()) ^ set(after.items()))
    (base / "host_changes.txt").write_text("\n".join(map(str, changed)))
    with open(base / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    points: dict[str, dict[str, int]] = {}
    flags: dict[str, dict[str, set[str]]] = {}
    for student, _, test, got, _, words in rows[1:]:
        points.setdefault(student, {})[test] = int(float(got))
        flags.setdefault(student, {})[test] = set(words.split(";")) - {""}
    return {"code": code, "rows": rows, "points": points, "flags": flags, "base": base,
            "seconds": seconds, "changed": changed,
            "leftovers": sorted(os.listdir(sandboxes)), "children": children(),
            "details": {d.student: d for d in read_details(base / "grades_details.json")},
            "feedback": {p.stem: p.read_text(encoding="utf-8")
                         for p in (base / "feedback").glob("*.md")}}


def _check(run, *students: str) -> None:
    """The attackers' points and flags as expected, every other student's points as expected
    (the honest ones' flags too), the host's files intact."""
    assert run["code"] == 0
    for student in (*students, *HONEST):
        points, notebook_flags, test_flags = EXPECTED[student]
        assert run["points"][student] == points, (student, run["details"][student])
        for test in points:
            words = set(f"{notebook_flags};{test_flags.get(test, '')}".split(";")) - {""}
            assert run["flags"][student][test] == words, (student, test, run["flags"][student])
    assert {s: run["points"].get(s) for s in EXPECTED} == {s: e[0] for s, e in EXPECTED.items()}
    assert run["changed"] == []


def test_root_in_the_sandbox_has_no_privilege_and_cannot_remount_or_plant_files(run):
    _check(run, "root_escalation", "fence_probe")


def test_malformed_and_unreadable_notebooks_are_flagged_for_that_student_only(run):
    _check(run, "bad_number", "bad_no_type", "bad_null_source", "garbage")


def test_links_pipes_devices_and_linked_folders_are_never_followed(run):
    _check(run, "eve", "mallory", "linked_folder", "piper", *(["device"] * ROOT_RUN))


def test_in_memory_file_systems_processes_and_cpu_are_bounded(run):
    _check(run, "shm_filler", "disk_filler", "forker", "setsid_hog", "thread_hog", "escaper")
    assert run["details"]["thread_hog"].seconds < NOTEBOOK_TIMEOUT


def test_the_checks_of_a_test_run_under_their_own_time_and_memory_limits(run):
    _check(run, "big_hidden", "wide_result", "list_bomb")
    messages = {s: run["details"][s].tests[-1].message
                for s in ("big_hidden", "wide_result", "list_bomb")}
    assert "took too long" in messages["big_hidden"]
    assert "ran out of memory" in messages["wide_result"]
    assert "not plain data" in messages["list_bomb"]


def test_tests_trust_nothing_of_the_student_but_the_graded_answer(run):
    _check(run, "mutator", "lying_helpers", "autograd_user", "profiler_off")


def test_feedback_holds_only_the_instructors_words_escaped(run):
    _check(run, "leaker")
    feedback = run["feedback"]
    assert sorted(feedback) == sorted(EXPECTED)
    for text in feedback.values():
        for secret in ("HIDDEN-TOKEN", "SOLUTION-TOKEN", "LEAK", "(6, 6)", "<b>", "<script>",
                       "](http", "800.0", "numpy.linalg"):
            assert secret not in text
    leaker = feedback["leaker"]
    assert "answer\\_choice is one of 'a', 'b', 'c': got …" in leaker
    assert "tanh\\_grad matches autograd on \\[-3, 3\\]: failed with ValueError" in leaker
    assert "sigmoid matches torch.sigmoid on \\[-5, 5\\]: not implemented yet" \
        in feedback["untouched"]
    assert "forbids" in feedback["autograd_user"]
    assert main(["feedback", str(run["base"] / "grades_details.json"), "--out",
                 str(run["base"] / "again")]) == 0
    assert (run["base"] / "again" / "leaker.md").read_text() == leaker


@pytest.mark.parametrize("student", EARLIER)
def test_the_attacks_withstood_before_still_fail(run, student):
    _check(run, student)


def test_grading_leaves_no_process_or_directory_behind(run):
    assert run["leftovers"] == []
    assert run["children"] == []
    assert not [p for p in _all_commands() if ESCAPE_MARK in p]


def test_grades_csv_has_the_contract_header_and_sorted_rows(run):
    rows = run["rows"]
    assert rows[0] == ["student", "lab", "test", "points", "max_points", "flags"]
    assert rows[1:] == sorted(rows[1:])
    assert len(rows) - 1 == len(FULL) * len(EXPECTED)
    summary = (run["base"] / "grades_summary.csv").read_text().splitlines()
    assert summary[0] == "student,fx_lab,total,max_points"
    assert "solution,12,12,12" in summary and "untouched,0,0,12" in summary


LIMITS_PROBE = (
    "import json, os, resource\n"
    "status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n"
    "limits = {name: resource.getrlimit(getattr(resource, 'RLIMIT_' + name))\n"
    "          for name in ('AS', 'FSIZE', 'NPROC', 'NOFILE', 'CORE')}\n"
    "size = {d: os.statvfs(d).f_blocks * os.statvfs(d).f_frsize for d in ('/tmp', '/dev/shm')}\n"
    "groups = open('/proc/self/cgroup').read()\n"
    "json.dump({'limits': limits, 'size': size, 'cpus': sorted(os.sched_getaffinity(0)),\n"
    "           'uid': os.getuid(), 'cap': status['CapEff'].strip(),\n"
    "           'writable': {d: os.access(d, os.W_OK) for d in ('/', '/etc', '/usr', '/dev')}},\n"
    "          open('/run/rnnlab/probe.json', 'w'))\n")


def test_a_kernel_runs_with_exactly_the_limits_it_was_given(tmp_path):
    import json

    from rnnlab.grading.kernel import StudentKernel
    from rnnlab.grading.limits import MAX_RESULT_BYTES, Limits
    from rnnlab.grading.sandbox import Sandbox

    limits = Limits(memory=3 * 2**30 + 2**20, scratch=96 * 2**20, processes=40)
    box = Sandbox(tmp_path / "box", True, limits, cpus=[0])
    kernel = StudentKernel(box, startup_timeout=300)
    try:
        assert kernel.start(time.monotonic() + 300).status == "ok"
        assert kernel.execute(LIMITS_PROBE, time.monotonic() + 120).status == "ok"
        seen = json.loads((box.ipc / "probe.json").read_text())
        group = box.group
    finally:
        kernel.kill()
        box.cleanup()
    largest_file = max(limits.scratch, MAX_RESULT_BYTES + 2**20)
    assert seen["limits"] == {"AS": [limits.memory] * 2, "FSIZE": [largest_file] * 2,
                              "NPROC": [40, 40], "NOFILE": [1024, 1024], "CORE": [0, 0]}
    assert seen["size"] == {"/tmp": limits.scratch, "/dev/shm": limits.scratch // 4}
    assert seen["uid"] == 65534 and seen["cap"] == "0" * 16
    assert seen["writable"] == {"/": False, "/etc": False, "/usr": False, "/dev": False}
    if ROOT_RUN and support().cgroups:          # the tree's own group bounds memory and CPU
        assert group is not None and seen["cpus"] == sorted(os.sched_getaffinity(0))
    else:                                       # pinned to the CPU it was given
        assert seen["cpus"] == [0]
    assert box.group is None and not (tmp_path / "box").exists()


def test_a_control_group_holds_the_limits_it_was_given():
    if not support().cgroups:
        pytest.skip("control groups need root and cgroup v1 hierarchies")
    from rnnlab.grading.cgroup import ControlGroup

    group = ControlGroup.create(memory=2**30, processes=33, cpus=1)
    try:
        read = {name: (d / file).read_text().strip() for name, d, file in (
            ("memory", group.directories["memory"], "memory.limit_in_bytes"),
            ("pids", group.directories["pids"], "pids.max"),
            ("quota", group.directories["cpu"], "cpu.cfs_quota_us"),
            ("period", group.directories["cpu"], "cpu.cfs_period_us"))}
        assert read == {"memory": str(2**30), "pids": "33", "quota": "100000",
                        "period": "100000"}
        assert group.pids() == set() and group.oom_kills() == 0
        directories = list(group.directories.values())
    finally:
        group.close()
    assert not any(d.exists() for d in directories)


def _all_commands() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
    return found
