"""`rnnlab grade`: honest scores for honest and hostile submissions, nothing left behind.

The hostile suite grades one folder of submissions of the fixture lab (three answers worth
2 + 3 + 1 points) in a single run with small limits, then checks each student's score and flags.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import signal
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from rnnlab.cli import main
from rnnlab.grading import remote
from rnnlab.grading.grade import grade, parse_memory
from rnnlab.grading.notebook import read_notebook
from rnnlab.grading.release import release, release_notebook
from rnnlab.grading.report import read_details
from rnnlab.grading.sandbox import LAUNCHER, bwrap_available
from rnnlab.grading.session import Limits

FIXTURE = Path(__file__).parent / "fixtures" / "grading" / "solutions"
SOURCE = FIXTURE / "fx_lab.ipynb"
CELL_TIMEOUT = 5.0
NOTEBOOK_TIMEOUT = 90.0
ESCAPE = "4242.5"          # `sleep 4242.5`: the detached process a hostile answer starts

SIGMOID = "def sigmoid(x):\n    return 1.0 / (1.0 + torch.exp(-x))"
RADIUS = "def spectral_radius(weight):\n    return torch.linalg.eigvals(weight).abs().max().item()"
CHOICE = 'answer_choice = "b"'
CORRECT = {"answer-sigmoid": SIGMOID, "answer-radius": RADIUS, "answer-choice": CHOICE}

STUDENTS = {
    "solution": {**CORRECT},
    "untouched": {},
    "alternative": {
        "answer-sigmoid": "def sigmoid(x):\n    return torch.special.expit(x)",
        "answer-radius": "import numpy as np\n\ndef spectral_radius(weight):\n"
                         "    return float(np.abs(np.linalg.eigvals(weight.numpy())).max())",
        "answer-choice": 'answer_choice = "abc"[1]',
    },
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
        "answer-radius": f"import os\nFOUND = os.listdir({str(Path(__file__).parent)!r})\n"
                         f"{RADIUS}",
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
}
ESCAPER = ("import subprocess\n"       # a detached grandchild that outlives the kernel's session
           f"subprocess.Popen(['/bin/sh', '-c', 'sleep {ESCAPE} &'], start_new_session=True)"
           ".wait()\n" + SIGMOID)
# student: (points per test, notebook flags, {test: flags of that test})
EXPECTED = {
    "solution": ({"test-sigmoid": 2, "test-radius": 3, "test-choice": 1}, "", {}),
    "untouched": ({"test-sigmoid": 0, "test-radius": 0, "test-choice": 0}, "", {}),
    "alternative": ({"test-sigmoid": 2, "test-radius": 3, "test-choice": 1}, "", {}),
    "cheater": ({"test-sigmoid": 0, "test-radius": 0, "test-choice": 0}, "", {}),
    "always_equal": ({"test-sigmoid": 0, "test-radius": 0, "test-choice": 0}, "",
                     {"test-sigmoid": "error", "test-radius": "error", "test-choice": "error"}),
    "reader": ({"test-sigmoid": 0, "test-radius": 0, "test-choice": 0}, "error",
               {"test-sigmoid": "error"}),
    "looper": ({"test-sigmoid": 0, "test-radius": 3, "test-choice": 1}, "",
               {"test-sigmoid": "timeout"}),
    "exiter": ({"test-sigmoid": 2, "test-radius": 0, "test-choice": 1}, "",
               {"test-radius": "kernel_died"}),
    "killer": ({"test-sigmoid": 0, "test-radius": 3, "test-choice": 1}, "",
               {"test-sigmoid": "kernel_died"}),
    "memory_hog": ({"test-sigmoid": 2, "test-radius": 0, "test-choice": 0}, "memory",
                   {"test-radius": "memory"}),
    "flooder": ({"test-sigmoid": 2, "test-radius": 3, "test-choice": 0}, "timeout", {}),
    "sleeper": ({"test-sigmoid": 0, "test-radius": 0, "test-choice": 1}, "",
                {"test-radius": "timeout"}),
    "tamperer": ({"test-sigmoid": 2, "test-radius": 0, "test-choice": 0}, "tampered", {}),
    "deleter": ({"test-sigmoid": 0, "test-radius": 0, "test-choice": 1}, "missing",
                {"test-sigmoid": "error"}),
}
SANDBOX_ONLY = {"reader"}


def make_submission(lab: nbformat.NotebookNode, answers: dict[str, str]
                    ) -> nbformat.NotebookNode:
    """The released ``lab`` with the given answer cells filled in, as a student would."""
    notebook = copy.deepcopy(lab)
    for cell in notebook.cells:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        if grade_id in answers:
            cell.source = answers[grade_id]
    return notebook


def _write(directory: Path, student: str, name: str, notebook) -> None:
    (directory / student).mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, directory / student / name)


def _our_processes() -> list[tuple[int, str]]:
    """(pid, command line) of live grading kernels and of the hostile detached `sleep`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "kernelapp.launch_new_instance" in cmdline or f"sleep {ESCAPE}" in cmdline:
            found.append((int(entry.name), cmdline))
    return found


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Grade every hostile submission once, through the CLI, with two jobs."""
    base = tmp_path_factory.mktemp("hostile")
    lab = release_notebook(read_notebook(SOURCE), "fx_lab")
    submissions = base / "submissions"
    for student, answers in STUDENTS.items():
        _write(submissions, student, "fx_lab.ipynb", make_submission(lab, answers))
    tampered = make_submission(lab, {"answer-sigmoid": ESCAPER, "test-sigmoid": "assert False",
                                     "test-radius": "pass", "setup": "device = 'cuda'"})
    _write(submissions, "tamperer", "fx_lab.ipynb", tampered)
    deleted = make_submission(lab, {**CORRECT, "answer-sigmoid": "def sigmoid(x):\n"
                                                                 "    raise ValueError('nope')"})
    deleted.cells = [c for c in deleted.cells
                     if c.metadata["nbgrader"]["grade_id"] != "answer-radius"]
    _write(submissions, "deleter", "fx_lab.ipynb", deleted)
    before = set(os.listdir("/tmp"))
    start = time.monotonic()
    code = main(["grade", str(submissions), "--source", str(FIXTURE), "--out",
                 str(base / "grades.csv"), "--jobs", "2", "--cell-timeout", str(CELL_TIMEOUT),
                 "--notebook-timeout", str(NOTEBOOK_TIMEOUT), "--memory", "3G",
                 "--feedback", str(base / "feedback"), "--quiet"])
    seconds = time.monotonic() - start
    assert code == 0
    with open(base / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    leftovers = sorted(n for n in set(os.listdir("/tmp")) - before if n.startswith("rnnlab-"))
    processes = _our_processes()
    for pid, cmdline in processes:       # clean up after a failure, before asserting on it
        if f"sleep {ESCAPE}" in cmdline:
            os.kill(pid, signal.SIGKILL)
    return {"rows": rows, "base": base, "seconds": seconds, "processes": processes,
            "tmp_leftovers": leftovers, "details": read_details(base / "grades_details.json"),
            "submissions": submissions}


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_hostile_submission_gets_exactly_the_points_it_earned(hostile, student):
    if student in SANDBOX_ONLY and not bwrap_available():
        pytest.skip("needs bwrap: without a sandbox, student code can read the solutions")
    points, notebook_flags, test_flags = EXPECTED[student]
    rows = {r[2]: r for r in hostile["rows"][1:] if r[0] == student}
    assert sorted(rows) == sorted(points)
    for test, expected in points.items():
        _, lab, _, got, max_points, flags = rows[test]
        assert lab == "fx_lab"
        assert int(got) == expected, (student, test, rows[test])
        words = {notebook_flags, test_flags.get(test, "")} - {""}
        assert set(flags.split(";")) - {""} == words, (student, test, rows[test])
    detail = next(d for d in hostile["details"] if d.student == student)
    assert detail.seconds < NOTEBOOK_TIMEOUT + 30


@pytest.mark.slow
def test_grades_csv_has_the_contract_header_and_sorted_rows(hostile):
    rows = hostile["rows"]
    assert rows[0] == ["student", "lab", "test", "points", "max_points", "flags"]
    assert rows[1:] == sorted(rows[1:])
    assert len(rows) - 1 == 3 * len(EXPECTED)
    summary = (hostile["base"] / "grades_summary.csv").read_text().splitlines()
    assert summary[0] == "student,fx_lab,total,max_points"
    assert "solution,6,6,6" in summary and "untouched,0,0,6" in summary


@pytest.mark.slow
def test_grading_leaves_no_kernel_process_or_directory_behind(hostile):
    kernels = [c for _, c in hostile["processes"] if "kernelapp" in c]
    escaped = [c for _, c in hostile["processes"] if ESCAPE in c]
    assert kernels == []
    assert hostile["tmp_leftovers"] == []
    if bwrap_available():     # without a PID namespace a double fork escapes (documented)
        assert escaped == []


@pytest.mark.slow
def test_same_input_gives_the_same_csv_with_one_job(hostile, tmp_path):
    subset = tmp_path / "subset"
    for student in ("untouched", "alternative"):
        (subset / student).mkdir(parents=True)
        source = hostile["submissions"] / student / "fx_lab.ipynb"
        (subset / student / "fx_lab.ipynb").write_bytes(source.read_bytes())
    assert main(["grade", str(subset), "--source", str(FIXTURE), "--out",
                 str(tmp_path / "again.csv"), "--quiet"]) == 0
    again = (tmp_path / "again.csv").read_text().splitlines()
    first = (hostile["base"] / "grades.csv").read_text().splitlines()
    assert again == [first[0]] + [r for r in first[1:] if r.split(",")[0] in
                                  ("untouched", "alternative")]


@pytest.mark.slow
def test_feedback_names_visible_checks_and_never_hidden_code(hostile):
    feedback = hostile["base"] / "feedback"
    texts = {p.stem: p.read_text(encoding="utf-8") for p in feedback.glob("*.md")}
    assert sorted(texts) == sorted(EXPECTED)
    for text in texts.values():
        for secret in ("HIDDEN-TOKEN", "SOLUTION-TOKEN", "saturates", "800.0", "numpy.linalg"):
            assert secret not in text
    assert "sigmoid matches torch.sigmoid on [-5, 5]: not implemented yet" in texts["untouched"]
    assert "`test-sigmoid` (0/2): hidden test 1 failed" in texts["sleeper"]
    assert "timed out" in texts["looper"] and "✓ `test-radius` (3/3)" in texts["looper"]
    assert "ValueError: nope" in texts["deleter"]
    assert main(["feedback", str(hostile["base"] / "grades_details.json"), "--out",
                 str(hostile["base"] / "again")]) == 0
    assert (hostile["base"] / "again" / "sleeper.md").read_text() == texts["sleeper"]


def test_plain_data_round_trips_bit_exactly():
    generator = torch.Generator().manual_seed(0)
    values = [
        None, True, 3, -2.5, "σ", complex(1, -2), [1, (2, 3)], {"a": (1,), 2: [None]},
        torch.randn(2, 3, generator=generator, dtype=torch.float64),
        torch.tensor([float("nan"), float("inf"), -0.0]), torch.zeros(0, 4, dtype=torch.int64),
        torch.tensor([1.5, -2.25], dtype=torch.bfloat16), torch.tensor([[True, False]]),
        np.arange(6, dtype=np.int16).reshape(2, 3), torch.Size([2, 3]),
    ]
    for value in values:
        back = remote.loads(remote.dumps(value))
        if isinstance(value, torch.Tensor):
            assert type(back) is torch.Tensor and back.dtype == value.dtype
            assert back.shape == value.shape
            assert torch.equal(back.view(-1).view(torch.uint8) if back.numel() else back,
                               value.view(-1).view(torch.uint8) if value.numel() else value)
        elif isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and np.array_equal(back, value)
        elif isinstance(value, torch.Size):
            assert back == (2, 3) and type(back) is tuple
        else:
            assert back == value and type(back) is type(value)
    assert math.isnan(remote.loads(remote.dumps(float("nan"))))


@pytest.mark.parametrize("value", [object(), type("S", (str,), {})("x"), torch.nn.Linear(1, 1),
                                   lambda: 1, np.array(["a"], dtype=object), {1, 2}])
def test_plain_data_rejects_everything_else(value):
    with pytest.raises(TypeError, match="not plain data"):
        remote.dumps(value)


@pytest.mark.parametrize("text", ['{"__reduce__": 1}', '{"a": 1, "b": 2}',
                                  '{"__tensor__": {"dtype": "object", "shape": [1], "data": ""}}',
                                  '{"__ndarray__": {"dtype": "|O", "shape": [1], "data": ""}}'])
def test_plain_data_decoding_rejects_unknown_or_unsafe_objects(text):
    with pytest.raises((ValueError, TypeError)):
        remote.loads(text)


def test_parse_memory_reads_binary_units():
    assert parse_memory("4G") == 4 * 2**30
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("1.5g") == 3 * 2**29
    assert parse_memory(1234) == 1234
    with pytest.raises(ValueError, match="memory"):
        parse_memory("lots")


def test_require_sandbox_refuses_when_bwrap_is_unusable(tmp_path, monkeypatch):
    monkeypatch.setattr("rnnlab.grading.grade.bwrap_available", lambda: False)
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    code = main(["grade", str(tmp_path / "subs"), "--source", str(FIXTURE), "--out",
                 str(tmp_path / "g.csv"), "--require-sandbox", "--quiet"])
    assert code == 2 and not (tmp_path / "g.csv").exists()


def test_not_submitted_and_unreadable_score_zero_without_a_kernel(tmp_path):
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    (tmp_path / "subs" / "bob").mkdir(parents=True)
    (tmp_path / "subs" / "bob" / "fx_lab.ipynb").write_text("{not json")
    results, _ = grade(tmp_path / "subs", FIXTURE, limits=Limits(cell_timeout=1.0))
    assert [(r.student, sorted(r.flags), sum(t.points for t in r.tests)) for r in results] == [
        ("ann", ["not_submitted"], 0.0), ("bob", ["unreadable"], 0.0)]
    assert all(len(r.tests) == 3 for r in results)


def test_launcher_program_sets_the_memory_limit_before_ipykernel():
    assert LAUNCHER.index("RLIMIT_AS") < LAUNCHER.index("ipykernel")


@pytest.mark.slow
def test_real_solutions_score_full_marks_and_released_labs_zero(root, tmp_path):
    sources = sorted((root / "solutions").glob("*.ipynb"))
    if not sources:
        pytest.skip("solutions/ has no notebooks yet")
    release(root / "solutions", tmp_path / "labs")
    submissions = tmp_path / "submissions"
    for path in sources:
        solution = read_notebook(path)
        lab = read_notebook(tmp_path / "labs" / path.name)
        answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
                   if c.metadata["nbgrader"].get("solution")}
        _write(submissions, "perfect", path.name, make_submission(lab, answers))
        _write(submissions, "blank", path.name, lab)
    results, _ = grade(submissions, root / "solutions", jobs=2)
    for result in results:
        scored = sum(t.points for t in result.tests)
        maximum = sum(t.max_points for t in result.tests)
        assert maximum > 0 and not result.flags, (result.student, result.lab, result.flags)
        expected = maximum if result.student == "perfect" else 0
        assert scored == expected, (result.student, result.lab,
                                    [(t.test, t.points, t.message) for t in result.tests])


NO_PROCESS = ("import os\n"
              "def _sleeping():\n"
              "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
              "        try:\n"
              "            if b'sleep' in open(f'/proc/{pid}/cmdline', 'rb').read():\n"
              "                return True\n"
              "        except OSError:\n"
              "            pass\n"
              "    return False\n"
              "answer_choice = 'x' if _sleeping() else 'b'")
# student: (lab A's answers, lab B's answers); both labs are the fixture lab, graded in turn
TWO_LABS = {
    "leaky": ({**CORRECT, "answer-choice": "from_lab_a = 1\n" + CHOICE},
              {**CORRECT, "answer-choice": "answer_choice = 'x' if 'from_lab_a' in globals() "
                                           "else 'b'"}),
    "exiter": (STUDENTS["exiter"], CORRECT),
    "trapper": ({**CORRECT, "answer-choice": "import os\nfrom IPython.core.interactiveshell "
                                             "import InteractiveShell\nInteractiveShell.reset = "
                                             "lambda *a, **k: os._exit(0)\n" + CHOICE},
                CORRECT),
    "strayer": ({**CORRECT, "answer-sigmoid": ESCAPER}, {**CORRECT, "answer-choice": NO_PROCESS}),
}


@pytest.fixture(scope="module")
def two_labs(tmp_path_factory):
    """Grade students of two labs (two copies of the fixture lab) with two jobs."""
    base = tmp_path_factory.mktemp("two_labs")
    for name in ("fx_a", "fx_b"):
        (base / "source").mkdir(exist_ok=True)
        (base / "source" / f"{name}.ipynb").write_bytes(SOURCE.read_bytes())
    lab = release_notebook(read_notebook(SOURCE), "fx_lab")
    for student, (first, second) in TWO_LABS.items():
        _write(base / "subs", student, "fx_a.ipynb", make_submission(lab, first))
        _write(base / "subs", student, "fx_b.ipynb", make_submission(lab, second))
    results, _ = grade(base / "subs", base / "source", jobs=2,
                       limits=Limits(cell_timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT,
                                     memory=3 * 2**30))
    processes = _our_processes()
    for pid, cmdline in processes:
        if f"sleep {ESCAPE}" in cmdline:
            os.kill(pid, signal.SIGKILL)
    return {(r.student, r.lab): r for r in results}, processes


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(TWO_LABS))
def test_a_students_next_lab_sees_nothing_of_the_previous_one(two_labs, student):
    if student == "strayer" and not bwrap_available():
        pytest.skip("needs bwrap: without a PID namespace a detached process escapes")
    results, _ = two_labs
    expected_a = {"exiter": ({"test-sigmoid": 2, "test-radius": 0, "test-choice": 1},
                             {"test-radius": ("kernel_died",)})}
    points_a, flags_a = expected_a.get(
        student, ({"test-sigmoid": 2, "test-radius": 3, "test-choice": 1}, {}))
    a, b = results[(student, "fx_a")], results[(student, "fx_b")]
    assert {t.test: t.points for t in a.tests} == points_a
    assert {t.test: t.flags for t in a.tests if t.flags} == flags_a and not a.flags
    assert {t.test: t.points for t in b.tests} == {"test-sigmoid": 2, "test-radius": 3,
                                                   "test-choice": 1}, b.tests
    assert not b.flags and not any(t.flags for t in b.tests), b


@pytest.mark.slow
def test_per_student_kernels_leave_nothing_behind(two_labs):
    _, processes = two_labs
    assert [c for _, c in processes if "kernelapp" in c] == []
    if bwrap_available():
        assert [c for _, c in processes if ESCAPE in c] == []
