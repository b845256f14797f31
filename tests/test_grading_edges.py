"""The rough edges a new instructor met (issue 14): a memory too small for torch, folders skipped
for their names, names too long for a file, students working inside the repository's labs/ (no
kernel needed), and what feedback and the terminal say about NaN results, results that are not
plain data and answers calling unanswered ones (one small class, graded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from grading_kit import CORRECT, FIXTURE, ROOT, make_submission, released_lab, write

from rnnlab.cli import main
from rnnlab.grading.answers import AnswerProxy, UsesUnanswered
from rnnlab.grading.batch import MIN_KERNEL_MEMORY, grade
from rnnlab.grading.labs import REPOSITORY_LABS, copy_labs
from rnnlab.grading.limits import Limits
from rnnlab.grading.messages import failure_message
from rnnlab.grading.report import feedback_name, write_feedback
from rnnlab.grading.results import NotebookResult, TestResult
from rnnlab.grading.submissions import hidden_folders, students


@pytest.fixture
def one_student(tmp_path):
    write(tmp_path / "subs", "alice", "fx_lab.ipynb", make_submission(released_lab(), CORRECT))
    return tmp_path / "subs"


def test_memory_below_what_torch_needs_is_refused_before_any_grading(one_student, tmp_path,
                                                                     capsys):
    out = tmp_path / "grades.csv"
    code = main(["grade", str(one_student), "--source", str(FIXTURE), "--out", str(out),
                 "--memory", "512M", "--quiet"])
    assert code == 2 and not out.exists()
    assert "memory: expected at least 1.5G" in capsys.readouterr().err
    with pytest.raises(ValueError, match="memory: expected at least"):
        grade(one_student, FIXTURE, limits=Limits(memory=MIN_KERNEL_MEMORY - 2**20))


def test_folders_starting_with_a_dot_are_named_not_skipped_in_silence(tmp_path, capsys):
    submissions = tmp_path / "subs"
    write(submissions, ".bob", "fx_lab.ipynb", released_lab())
    (submissions / ".ipynb_checkpoints").mkdir()
    (submissions / ".notes.txt").write_text("not a folder")
    assert students(submissions) == []
    assert hidden_folders(submissions) == [".bob", ".ipynb_checkpoints"]
    code = main(["grade", str(submissions), "--source", str(FIXTURE), "--out",
                 str(tmp_path / "grades.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert "2 folder(s) whose names start with '.' were not graded: '.bob', " \
           "'.ipynb_checkpoints'" in err


def _result(student: str) -> NotebookResult:
    return NotebookResult(student, "fx_lab", set(), [TestResult("test-a", 1.0, 1.0, (), "")])


def test_feedback_of_a_255_character_name_is_written_under_a_short_unique_file_name(tmp_path):
    long_a, long_b = "a" * 255, "a" * 250 + "b" * 5
    paths = write_feedback([_result(long_a), _result(long_b), _result("carol")], tmp_path)
    names = sorted(p.name for p in paths)
    assert len(set(names)) == 3 and "carol.md" in names
    assert all(len(name.encode()) <= 255 for name in names)
    texts = {p.read_text(encoding="utf-8").splitlines()[0] for p in paths}
    assert f"# Feedback for {long_a}" in texts and f"# Feedback for {long_b}" in texts
    assert feedback_name("é" * 200).endswith(".md")      # multi-byte names are cut by bytes
    assert len(feedback_name("é" * 200).encode()) <= 255


def test_labs_copy_copies_the_labs_byte_for_byte_and_never_overwrites(tmp_path, capsys):
    dest = tmp_path / "my-labs"
    copied = copy_labs(dest, FIXTURE)
    assert [p.name for p in copied] == ["fx_lab.ipynb"]
    assert (dest / "fx_lab.ipynb").read_bytes() == (FIXTURE / "fx_lab.ipynb").read_bytes()
    (dest / "fx_lab.ipynb").write_text("the student's work")
    with pytest.raises(FileExistsError, match="already holds fx_lab.ipynb"):
        copy_labs(dest, FIXTURE)
    assert main(["labs", "copy", str(dest), "--source", str(FIXTURE)]) == 2
    assert "nothing was copied" in capsys.readouterr().err
    assert (dest / "fx_lab.ipynb").read_text() == "the student's work"
    with pytest.raises(FileNotFoundError, match="expected released labs"):
        copy_labs(tmp_path / "other", tmp_path / "empty")


def test_labs_copy_defaults_to_the_repositorys_labs(tmp_path):
    assert REPOSITORY_LABS == ROOT / "labs"
    if not sorted(REPOSITORY_LABS.glob("*.ipynb")):
        pytest.skip("labs/ has no notebooks")
    assert main(["labs", "copy", str(tmp_path / "work")]) == 0
    assert sorted(os.listdir(tmp_path / "work")) == sorted(
        p.name for p in REPOSITORY_LABS.glob("*.ipynb"))


def _proxy(name: str, error: dict) -> AnswerProxy:
    envelope = json.dumps({"error": {"message": "", **error}})
    return AnswerProxy(name, (), lambda request: envelope, [], frozenset({"sigmoid", "tanh_grad"}))


def test_an_answer_calling_an_unanswered_one_is_told_which_one():
    with pytest.raises(UsesUnanswered, match="uses sigmoid, which is not implemented yet"):
        _proxy("tanh_grad", {"type": "NotImplementedError", "where": "sigmoid"})(1.0)
    with pytest.raises(UsesUnanswered, match="uses sigmoid"):       # deleted, not stubbed
        _proxy("tanh_grad", {"type": "NameError", "where": "sigmoid"})(1.0)
    for called, error in [("tanh_grad", {"type": "NotImplementedError", "where": "tanh_grad"}),
                          ("tanh_grad", {"type": "NotImplementedError", "where": "helper"}),
                          ("tanh_grad", {"type": "NotImplementedError"})]:
        with pytest.raises(NotImplementedError) as caught:           # its own: as before
            _proxy(called, error)(1.0)
        assert type(caught.value) is NotImplementedError
    source = "with check('tanh_grad matches autograd'):\n    assert tanh_grad(1.0)\n"
    assert failure_message(UsesUnanswered("sigmoid"), source, "<test>", []) == \
        "uses sigmoid, which is not implemented yet"


@pytest.mark.slow
def test_feedback_names_what_is_wrong_and_the_graders_terminal_stays_clean(tmp_path):
    """NaN results (LAPACK complains on stderr about them), a result that is not plain data and
    a written answer calling an unanswered one, graded by the command line as instructors do."""
    lab = released_lab()
    nan = "torch.full((2, 2), float('nan'), dtype=torch.float64)"
    students = {
        "nan": {**CORRECT, "answer-rotation": f"def rotation(theta):\n    return {nan}",
                "answer-radius": "def spectral_radius(weight):\n    return torch.linalg.eigvals("
                                 "weight * float('nan')).abs().max().item()"},
        "plain": {**CORRECT, "answer-radius": "class F:\n    pass\n\n"
                                              "def spectral_radius(weight):\n    return F()"},
        "caller": {**{k: v for k, v in CORRECT.items() if k != "answer-sigmoid"},
                   "answer-tanh_grad": "def tanh_grad(x):\n    s = sigmoid(2 * x)\n"
                                       "    return 4 * s * (1 - s)"},
    }
    for student, answers in students.items():
        write(tmp_path / "subs", student, "fx_lab.ipynb", make_submission(lab, answers))
    run = subprocess.run(
        [sys.executable, "-m", "rnnlab", "grade", str(tmp_path / "subs"), "--source",
         str(FIXTURE), "--out", str(tmp_path / "grades.csv"), "--feedback",
         str(tmp_path / "feedback"), "--memory", "3G", "--cell-timeout", "30", "--quiet"],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    feedback = {p.stem: p.read_text(encoding="utf-8") for p in (tmp_path / "feedback").iterdir()}
    assert "tanh\\_grad matches autograd on \\[-3, 3\\]: uses sigmoid, which is not implemented " \
           "yet" in feedback["caller"]
    assert "sigmoid matches torch.sigmoid on \\[-5, 5\\]: not implemented yet" in feedback["caller"]
    assert "spectral\\_radius of 0.5 x a rotation is 0.5: returned something that is not plain " \
           "data" in feedback["plain"]
    assert "rotation(0.5) is orthogonal: R^T R is not the identity" in feedback["nan"]
