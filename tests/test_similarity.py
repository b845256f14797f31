"""The similarity report on a class with planted copies — identical, with renamed variables,
reformatted — honest independent answers, and students who all hand in the solution."""

from __future__ import annotations

import csv

import pytest
from grading_kit import CORRECT, FIXTURE, make_submission, released_lab, write

from rnnlab.grading.similarity import SIMILARITY_HEADER, similar_pairs, tokens, write_similarity

# Three unusual answer sets, each handed in by an original and one copier.
ORIGINAL = {
    "identical": {
        "answer-sigmoid": "def sigmoid(x):\n    pos = torch.exp(-torch.abs(x))\n"
                          "    return torch.where(x >= 0, 1 / (1 + pos), pos / (1 + pos))",
        "answer-radius": "def spectral_radius(weight):\n    eig = torch.linalg.eigvals(weight)\n"
                         "    mags = [abs(complex(e)) for e in eig]\n    return float(max(mags))",
        "answer-clamp_all": "def clamp_all(values, bound):\n    result = []\n    for v in values:\n"
                            "        result.append(torch.minimum(torch.maximum(v, "
                            "torch.tensor(-bound)), torch.tensor(bound)))\n    return result",
    },
    "renamed": {
        "answer-sigmoid": "def sigmoid(x):\n    out = torch.empty_like(x)\n"
                          "    for i in range(x.numel()):\n"
                          "        out.view(-1)[i] = 1 / (1 + math.exp(-x.view(-1)[i].item()))\n"
                          "    return out",
        "answer-radius": "import numpy\n\ndef spectral_radius(weight):\n"
                         "    values = numpy.linalg.eigvals(weight.numpy())\n    best = 0.0\n"
                         "    for v in values:\n        best = max(best, abs(v))\n"
                         "    return float(best)",
        "answer-clamp_all": "def clamp_all(values, bound):\n"
                            "    return list(map(lambda t: t.clip(min=-bound, max=bound), values))",
    },
    "reformatted": {
        "answer-sigmoid": "def sigmoid(x):\n    half = 0.5 * x\n"
                          "    return 0.5 * (1 + torch.tanh(half))",
        "answer-radius": "def spectral_radius(weight):\n"
                         "    lam = torch.linalg.eigvals(weight.to(torch.complex128))\n"
                         "    return lam.abs().amax().item()",
        "answer-clamp_all": "def clamp_all(values, bound):\n    out = [None] * len(values)\n"
                            "    for k, v in enumerate(values):\n"
                            "        out[k] = torch.clamp(v.clone(), -bound, bound)\n"
                            "    return out",
    },
}
COPY = {
    "identical": ORIGINAL["identical"],
    "renamed": {
        "answer-sigmoid": "def sigmoid(z):\n    res = torch.empty_like(z)\n"
                          "    for j in range(z.numel()):\n"
                          "        res.view(-1)[j] = 1 / (1 + math.exp(-z.view(-1)[j].item()))\n"
                          "    return res",
        "answer-radius": "import numpy\n\ndef spectral_radius(w):\n"
                         "    eigs = numpy.linalg.eigvals(w.numpy())\n    top = 0.0\n"
                         "    for e in eigs:\n        top = max(top, abs(e))\n"
                         "    return float(top)",
        "answer-clamp_all": "def clamp_all(vals, b):\n"
                            "    return list(map(lambda q: q.clip(min=-b, max=b), vals))",
    },
    "reformatted": {
        "answer-sigmoid": "def sigmoid( x ):\n    # halve first\n    half = 0.5*x\n\n"
                          "    return 0.5*(1+torch.tanh(half))  # the tanh identity",
        "answer-radius": "def spectral_radius(weight):\n    lam = torch.linalg.eigvals(\n"
                         "        weight.to(torch.complex128)\n    )\n"
                         "    return (lam.abs()\n            .amax()\n            .item())",
        "answer-clamp_all": "def clamp_all(values,bound):\n    out=[None]*len(values)\n"
                            "    for k,v in enumerate(values):\n"
                            "        out[k]=torch.clamp(v.clone(),-bound,bound)\n\n    return out",
    },
}
HONEST = {
    "honest_a": {
        "answer-sigmoid": "def sigmoid(x):\n    return torch.sigmoid(x)",
        "answer-radius": "def spectral_radius(weight):\n"
                         "    return max(abs(v) for v in torch.linalg.eigvals(weight).tolist())",
        "answer-clamp_all": "def clamp_all(values, bound):\n"
                            "    return [torch.clamp(v, min=-bound, max=bound) for v in values]",
    },
    "honest_b": {
        "answer-sigmoid": "def sigmoid(x):\n    return 1 / (1 + (-x).exp())",
        "answer-radius": "def spectral_radius(weight):\n    r = torch.linalg.eigvals(weight)\n"
                         "    return float(torch.sqrt(r.real ** 2 + r.imag ** 2).max())",
        "answer-clamp_all": "def clamp_all(values, bound):\n    new = []\n    for t in values:\n"
                            "        new.append(t.clamp(-bound, bound))\n    return new",
    },
    "honest_c": {
        "answer-sigmoid": "def sigmoid(x):\n    z = torch.exp(-x)\n    return 1.0 / (z + 1.0)",
        "answer-radius": "def spectral_radius(weight):\n    import numpy as np\n"
                         "    return float(np.max(np.abs(np.linalg.eigvals(weight.numpy()))))",
        "answer-clamp_all": "def clamp_all(values, bound):\n"
                            "    return [v.where(v.abs() <= bound, v.sign() * bound)\n"
                            "            for v in values]",
    },
}
SOLUTION_STUDENTS = ["sol_1", "sol_2", "sol_3", "sol_4"]
PLANTED = {("fx_lab", f"{kind}_copy", f"{kind}_orig") for kind in ORIGINAL}


@pytest.fixture(scope="module")
def planted_class(tmp_path_factory):
    base = tmp_path_factory.mktemp("similarity")
    lab = released_lab()
    for kind in ORIGINAL:
        write(base, f"{kind}_orig", "fx_lab.ipynb", make_submission(lab, {**CORRECT,
                                                                          **ORIGINAL[kind]}))
        write(base, f"{kind}_copy", "fx_lab.ipynb", make_submission(lab, {**CORRECT,
                                                                          **COPY[kind]}))
    for student, answers in HONEST.items():
        write(base, student, "fx_lab.ipynb", make_submission(lab, {**CORRECT, **answers}))
    for student in SOLUTION_STUDENTS:
        write(base, student, "fx_lab.ipynb", make_submission(lab, CORRECT))
    write(base, "blank", "fx_lab.ipynb", lab)
    return base


def test_renaming_and_reformatting_do_not_change_the_tokens():
    original = ORIGINAL["renamed"]["answer-clamp_all"]
    keep = {"clamp_all", "torch"}
    assert tokens(COPY["renamed"]["answer-clamp_all"], keep) == tokens(original, keep)
    assert tokens(COPY["reformatted"]["answer-sigmoid"], {"sigmoid", "torch"}) == \
        tokens(ORIGINAL["reformatted"]["answer-sigmoid"], {"sigmoid", "torch"})
    assert tokens("def f(x):\n    return x.sum()", {"f"}) != \
        tokens("def f(x):\n    return x.mean()", {"f"})        # attributes are kept


def test_planted_copies_are_found_and_honest_or_common_answers_are_not(planted_class):
    everything = similar_pairs(planted_class, FIXTURE, threshold=1e-9)
    scores = {(lab, a, b): score for lab, a, b, score in everything}
    reported = {(lab, a, b) for lab, a, b, _ in similar_pairs(planted_class, FIXTURE)}
    assert reported == PLANTED, {k: scores.get(k) for k in reported ^ PLANTED}
    assert scores[("fx_lab", "identical_copy", "identical_orig")] == 1.0
    assert scores[("fx_lab", "renamed_copy", "renamed_orig")] == 1.0
    # reformatted: spaces, blank lines and comments change nothing; the parentheses added to
    # break `lam.abs().amax().item()` over lines are tokens of their own
    assert 0.8 <= scores[("fx_lab", "reformatted_copy", "reformatted_orig")] < 1.0
    honest = [s for (_, a, b), s in scores.items() if (_, a, b) not in PLANTED]
    assert max(honest, default=0.0) < 0.5, sorted(scores.items(), key=lambda kv: -kv[1])[:5]
    students = {name for _, a, b in scores for name in (a, b)}
    assert not students & {*SOLUTION_STUDENTS, "blank"}   # nothing of their own to compare


def test_similarity_csv_has_the_contract_header(planted_class, tmp_path):
    path = write_similarity(similar_pairs(planted_class, FIXTURE), tmp_path / "sim.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == SIMILARITY_HEADER
    assert {(lab, a, b) for lab, a, b, _ in rows[1:]} == PLANTED
    with pytest.raises(ValueError, match="threshold: expected"):
        similar_pairs(planted_class, FIXTURE, threshold=0.0)


def test_grade_writes_the_report_beside_the_grades(planted_class, tmp_path, monkeypatch):
    """The command line's part, without kernels: grading itself is replaced by no results."""
    from rnnlab import grading
    from rnnlab.cli import main

    monkeypatch.setattr(grading, "grade", lambda *args, **kwargs: ([], True))
    out = tmp_path / "grades.csv"
    assert main(["grade", str(planted_class), "--source", str(FIXTURE), "--out", str(out),
                 "--quiet"]) == 0
    with open(tmp_path / "grades_similarity.csv", newline="", encoding="utf-8") as handle:
        assert {(lab, a, b) for lab, a, b, _ in list(csv.reader(handle))[1:]} == PLANTED
