"""`rnnlab grade`: the pieces (plain data, submissions, the call recorder, write-back of changed
arguments, feedback text) against independent references, and grading across labs.

The hostile-student suite is `test_grading_hostile.py`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil

import nbformat
import numpy as np
import pytest
import torch
from grading_kit import (
    CORRECT,
    FIXTURE,
    SOURCE,
    children,
    make_submission,
    released_lab,
    write,
)

import rnnlab.cells
from rnnlab.cli import main
from rnnlab.grading import remote
from rnnlab.grading.answers import GradingEvent, mirror, unwrap
from rnnlab.grading.batch import grade, parse_memory
from rnnlab.grading.checker import TOO_LONG, Checker
from rnnlab.grading.checkproc import OUT_OF_MEMORY
from rnnlab.grading.labs import release
from rnnlab.grading.limits import Limits
from rnnlab.grading.messages import assertion_template
from rnnlab.grading.notebook import LabCell, read_notebook
from rnnlab.grading.recorder import SWITCHED_OFF, Recorder
from rnnlab.grading.report import escape
from rnnlab.grading.results import TestResult
from rnnlab.grading.sandbox import Support, support
from rnnlab.grading.submissions import read_submission

AUTOGRAD = ["torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward",
            "torch.autograd.functional",
            "torch.autograd.variable.Variable._execution_engine.run_backward"]


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


def test_plain_data_decoding_refuses_a_small_text_of_very_many_items():
    fine = [[]] * 10_000
    assert remote.loads(remote.dumps(fine)) == fine
    bomb = "[" + "[], " * remote.MAX_ITEMS + "[]]"          # 1 MiB of empty lists
    with pytest.raises(ValueError, match="items"):
        remote.loads(bomb)


def test_parse_memory_reads_binary_units():
    assert parse_memory("4G") == 4 * 2**30
    assert parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("1.5g") == 3 * 2**29
    assert parse_memory(1234) == 1234
    with pytest.raises(ValueError, match="memory"):
        parse_memory("lots")


@pytest.mark.parametrize(("kwargs", "error"), [({"memory": 2**20}, ValueError),
                                               ({"cell_timeout": "1"}, TypeError),
                                               ({"scratch": 1.5}, TypeError),
                                               ({"processes": 2}, ValueError)])
def test_limits_refuse_bad_values_naming_them(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        Limits(**kwargs)


@pytest.mark.parametrize("found", [Support(False, False, False), Support(True, False, True)])
def test_require_sandbox_refuses_without_bwrap_or_seccomp(tmp_path, monkeypatch, found):
    monkeypatch.setattr("rnnlab.grading.batch.support", lambda: found)
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    code = main(["grade", str(tmp_path / "subs"), "--source", str(FIXTURE), "--out",
                 str(tmp_path / "g.csv"), "--require-sandbox", "--quiet"])
    assert code == 2 and not (tmp_path / "g.csv").exists()


def _notebook_dict(answers: dict[str, str]) -> dict:
    return json.loads(nbformat.writes(make_submission(released_lab(), answers)))


def test_a_submission_is_read_only_as_a_valid_notebook_in_a_regular_file(tmp_path):
    good = _notebook_dict(CORRECT)
    listed = copy.deepcopy(good)
    listed["cells"][3]["source"] = ["def sigmoid(x):\n", "    return x"]
    number = copy.deepcopy(good)
    number["cells"][3]["source"] = 7
    cases = {"good.ipynb": json.dumps(good), "listed.ipynb": json.dumps(listed),
             "number.ipynb": json.dumps(number), "array.ipynb": "[1, 2]",
             "text.ipynb": "not json", "deep.ipynb": "[" * 100_000}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "link.ipynb").symlink_to(tmp_path / "good.ipynb")
    os.mkfifo(tmp_path / "fifo.ipynb")
    (tmp_path / "dir.ipynb").mkdir()
    flags = {name: read_submission(tmp_path, name)[1] for name in
             [*cases, "link.ipynb", "fifo.ipynb", "dir.ipynb", "absent.ipynb"]}
    assert flags == {"good.ipynb": None, "listed.ipynb": None, "number.ipynb": "invalid",
                     "array.ipynb": "invalid", "text.ipynb": "unreadable",
                     "deep.ipynb": "unreadable", "link.ipynb": "not_regular",
                     "fifo.ipynb": "not_regular", "dir.ipynb": "not_regular",
                     "absent.ipynb": "not_submitted"}
    notebook, _ = read_submission(tmp_path, "listed.ipynb")
    assert notebook.cells[3].source == "def sigmoid(x):\n    return x"
    (tmp_path / "folder").symlink_to(tmp_path, target_is_directory=True)
    assert read_submission(tmp_path / "folder", "good.ipynb") == (None, "not_regular")


def test_unusable_submissions_score_zero_without_a_kernel(tmp_path):
    subs = tmp_path / "subs"
    (subs / "ann").mkdir(parents=True)
    (subs / "bob").mkdir()
    (subs / "bob" / "fx_lab.ipynb").write_text("{not json")
    (subs / "cy").symlink_to(FIXTURE, target_is_directory=True)
    results, _ = grade(subs, FIXTURE, limits=Limits(cell_timeout=1.0), tmp_root=tmp_path)
    assert [(r.student, sorted(r.flags), r.points) for r in results] == [
        ("ann", ["not_submitted"], 0.0), ("bob", ["unreadable"], 0.0),
        ("cy", ["not_regular"], 0.0)]
    assert all(len(r.tests) == 6 for r in results)
    assert children() == []


def test_recorder_sees_forbidden_calls_direct_indirect_and_through_the_engine():
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)

    def by_grad(v):
        leaf = v.clone().requires_grad_(True)
        return torch.autograd.grad(torch.tanh(leaf).sum(), leaf)[0]

    def by_backward(v):
        leaf = v.clone().requires_grad_(True)
        torch.tanh(leaf).sum().backward()
        return leaf.grad

    def by_hand(v):
        with torch.no_grad():
            return 1 - torch.tanh(v) ** 2

    def switched_off(v):
        import sys
        sys.setprofile(None)
        return by_grad(v)

    reference = 1 - torch.tanh(x) ** 2
    for function, expected in ((by_grad, {"torch.autograd.grad", AUTOGRAD[-1]}),
                               (by_backward, {"torch.Tensor.backward", "torch.autograd.backward",
                                              AUTOGRAD[-1]}),
                               (by_hand, set()), (switched_off, {SWITCHED_OFF})):
        with Recorder(AUTOGRAD) as recorder:
            value = function(x)
        assert torch.allclose(value, reference)
        assert recorder.hits == expected, function.__name__


def test_recorder_sees_library_modules_and_c_functions():
    x, h, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    weights = torch.randn(16, 3), torch.randn(16, 4), torch.randn(16), torch.randn(16)
    with Recorder(["rnnlab.cells", "torch.lstm_cell", "torch.nn.LSTMCell"]) as recorder:
        rnnlab.cells.lstm_cell(x, (h, c), *weights)
        torch.lstm_cell(x, (h, c), *weights)
    assert recorder.hits == {"rnnlab.cells", "torch.lstm_cell"}
    with Recorder(["torch.nn.LSTMCell", "no_such_module.f"]) as recorder:
        torch.nn.LSTMCell(3, 4)
    assert recorder.hits == {"torch.nn.LSTMCell"}


def test_mirror_reproduces_in_place_changes_on_the_callers_objects():
    def student(values, table):            # changes everything it is given, in place
        values[0].mul_(2)
        values.append(torch.ones(1))
        table["w"].resize_(3).fill_(7.0)
        table["new"] = 1.5
        del table["gone"]

    def fresh():
        return ([torch.arange(3.0), torch.zeros(2)],
                {"w": torch.ones(2), "gone": 0, "keep": (torch.ones(1),)})

    expected_values, expected_table = fresh()
    student(expected_values, expected_table)            # the reference: done in one process
    values, table = fresh()
    kept = values[0]
    sent = remote.loads(remote.dumps([values, table]))  # what the kernel gets and changes
    student(*sent)
    after = remote.loads(remote.dumps(sent))            # what comes back
    mirror(values, after[0])
    mirror(table, after[1])
    assert values[0] is kept
    assert remote.dumps([values, table]) == remote.dumps([expected_values, expected_table])


def test_unwrap_returns_the_value_and_flags_forbidden_calls():
    ok = json.dumps({"ok": remote.dumps([1.0]), "args": None})
    assert unwrap(ok, [], {}) == [1.0]
    caught = json.dumps({"ok": remote.dumps(0), "args": None, "forbidden": ["torch.func"]})
    with pytest.raises(GradingEvent) as info:
        unwrap(caught, [], {})
    assert info.value.flag == "forbidden_call" and "torch.func" in str(info.value)
    with pytest.raises(ValueError, match="their words"):
        unwrap(json.dumps({"error": {"type": "ValueError", "message": "their words"}}), [], {})


def test_feedback_templates_keep_the_instructors_words_only():
    source = ('value = f(x)\n'
              'assert value == 1, f"expected 1, got {value!r} for {x}"\n'
              'assert value, "literal"\n'
              'assert value, message\n'
              'assert value\n')
    assert assertion_template(source, 1) == "expected 1, got … for …"
    assert assertion_template(source, 2) == "literal"
    assert assertion_template(source, 3) == ""
    assert assertion_template(source, 4) == ""
    assert escape("<b>*x*</b> [a](b) `c`\nd") == r"&lt;b&gt;\*x\*&lt;/b&gt; \[a\](b) \`c\` d"


@pytest.mark.slow
def test_checks_past_their_time_or_memory_fail_alone_and_the_checker_recovers():
    checker = Checker(Limits(cell_timeout=3.0, memory=2**30))

    def test(grade_id: str, source: str) -> TestResult:
        return checker.run_test(LabCell("test", grade_id, source, 1.0, True, False, "code"),
                                {}, session=None)          # no answer used: no kernel needed
    try:
        checker.begin_lab("lab")
        checker.run_setup("setup", "import torch\nbase = torch.ones(3)")
        slow = test("slow", "while True:\n    pass")
        big = test("big", "huge = torch.ones(2**31, dtype=torch.float64)")
        fine = test("fine", "assert base.sum() == 3")         # set-up replayed after the kill
    finally:
        checker.close()
    assert (slow.points, slow.flags, slow.message) == (0.0, ("error",), TOO_LONG)
    assert (big.points, big.flags, big.message) == (0.0, ("error",), OUT_OF_MEMORY)
    assert (fine.points, fine.flags) == (1.0, ())


def test_support_describes_what_the_sandbox_can_do():
    found = support()
    text = found.describe()
    assert ("bwrap" in text) == found.bwrap
    assert ("control groups (memory" in text) == (found.bwrap and found.cgroups)
    assert found.cgroups <= (os.geteuid() == 0)


# student: (lab A's answers, lab B's answers); both labs are the fixture lab, graded in turn
TWO_LABS = {
    "leaky": ({**CORRECT, "answer-choice": 'from_lab_a = 1\nanswer_choice = "b"'},
              {**CORRECT, "answer-choice": "answer_choice = 'x' if 'from_lab_a' in globals() "
                                           "else 'b'"}),
    "exiter": ({**CORRECT, "answer-radius": "import os\n\ndef spectral_radius(weight):\n"
                                            "    os._exit(0)"}, CORRECT),
    "trapper": ({**CORRECT, "answer-choice": "import os\nfrom IPython.core.interactiveshell "
                                             "import InteractiveShell\nInteractiveShell.reset = "
                                             "lambda *a, **k: os._exit(0)\nanswer_choice = 'b'"},
                CORRECT),
}


@pytest.fixture(scope="module")
def two_labs(tmp_path_factory):
    """Students of two labs (two copies of the fixture lab), graded with two jobs; then one of
    them, alone, again with one job."""
    base = tmp_path_factory.mktemp("two_labs")
    for name in ("fx_a", "fx_b"):
        (base / "source").mkdir(exist_ok=True)
        (base / "source" / f"{name}.ipynb").write_bytes(SOURCE.read_bytes())
    lab = released_lab()
    for student, (first, second) in TWO_LABS.items():
        write(base / "subs", student, "fx_a.ipynb", make_submission(lab, first))
        write(base / "subs", student, "fx_b.ipynb", make_submission(lab, second))
    limits = Limits(cell_timeout=5.0, notebook_timeout=300.0, memory=3 * 2**30)
    results, _ = grade(base / "subs", base / "source", jobs=2, limits=limits, tmp_root=base)
    shutil.copytree(base / "subs" / "leaky", base / "alone" / "leaky")
    again, _ = grade(base / "alone", base / "source", jobs=1, limits=limits, tmp_root=base)
    return {(r.student, r.lab): r for r in results}, again, children()


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(TWO_LABS))
def test_a_students_next_lab_sees_nothing_of_the_previous_one(two_labs, student):
    results, _, _ = two_labs
    full = {"test-sigmoid": 2, "test-radius": 3, "test-choice": 1, "test-tanh_grad": 2,
            "test-clamp_all": 2, "test-rotation": 2}
    a, b = results[(student, "fx_a")], results[(student, "fx_b")]
    if student == "exiter":
        assert {t.test: t.points for t in a.tests} == {**full, "test-radius": 0}
        assert {t.test: t.flags for t in a.tests if t.flags} == {"test-radius": ("kernel_died",)}
    else:
        assert {t.test: t.points for t in a.tests} == full and not any(t.flags for t in a.tests)
    assert not a.flags
    assert {t.test: t.points for t in b.tests} == full, b.tests
    assert not b.flags and not any(t.flags for t in b.tests), b


@pytest.mark.slow
def test_same_input_gives_the_same_results_whatever_the_jobs(two_labs):
    results, again, _ = two_labs
    assert [(r.student, r.lab, r.flags, r.tests) for r in again] == \
        [(r.student, r.lab, r.flags, r.tests) for key, r in sorted(results.items())
         if key[0] == "leaky"]


@pytest.mark.slow
def test_per_student_kernels_leave_nothing_behind(two_labs):
    _, _, left = two_labs
    assert left == []


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
        write(submissions, "perfect", path.name, make_submission(lab, answers))
        write(submissions, "blank", path.name, lab)
    results, _ = grade(submissions, root / "solutions", jobs=2, tmp_root=tmp_path)
    for result in results:
        assert result.max_points > 0 and not result.flags, (result.student, result.lab,
                                                            result.flags)
        expected = result.max_points if result.student == "perfect" else 0
        assert result.points == expected, (result.student, result.lab,
                                           [(t.test, t.points, t.message) for t in result.tests])
    assert set(os.listdir(tmp_path)) == {"labs", "submissions"}
