"""The saved long-range sweep (chapters/data/long_range.json) is what its script computes.

Re-runs ONE cell of ``bench/sweep_long_range.py`` with the configuration stored next to it
and checks the stored summary: the same seed gives the same run on the CPU, so the held-out
curve agrees to float32 round-off and the step counts exactly. The cell is the LSTM on the
adding problem at T = 50 with clipping, seed 0 (one of the cheapest cells that is solved).
The saved file also records the command, date, machine and torch version that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnlab.long_range import RECIPES, SOLVED_FRACTION, run_cell

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "chapters" / "data" / "long_range.json"
CELL = {"task": "adding", "seq_len": 50, "model": "lstm", "clip": 1.0, "seed": 0}


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads(DATA.read_text())


def test_saved_sweep_records_its_provenance_and_configuration(record):
    assert record["bench"] == "sweep_long_range"
    assert "bench/sweep_long_range.py" in record["command"]
    assert record["date"] and record["torch"] and record["machine"]["cpu"]
    results = record["results"]
    assert results["solved_fraction"] == SOLVED_FRACTION
    assert results["recipes"] == {name: vars(r) for name, r in RECIPES.items()}
    grid = results["grid"]
    assert max(grid["adding"]["lengths"]) >= 200
    seeds: dict[tuple, set] = {}
    for cell in results["cells"]:
        key = (cell["task"], cell["seq_len"], cell["model"], cell["clip"])
        seeds.setdefault(key, set()).add(cell["seed"])
    expected = {(task, seq_len, model, clip) for task, spec in grid.items()
                for seq_len in spec["lengths"] for model in RECIPES
                for clip in results["clips"]}
    assert set(seeds) == expected                             # the whole grid ...
    assert min(len(s) for s in seeds.values()) >= 3           # ... with >= 3 seeds per cell


def test_one_cell_of_the_sweep_reproduces_on_the_cpu(record):
    saved = [c for c in record["results"]["cells"]
             if all(c[k] == v for k, v in CELL.items())]
    assert len(saved) == 1, f"cell {CELL} not in {DATA}"
    saved = saved[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(record["threads"])
    try:
        fresh = run_cell(CELL["task"], CELL["model"], CELL["seq_len"], CELL["seed"],
                         CELL["clip"], steps=saved["steps_budget"],
                         hidden_size=saved["hidden_size"], batch_size=saved["batch_size"],
                         eval_every=saved["eval_every"], device="cpu")
    finally:
        torch.set_num_threads(threads)
    for key in ("solved", "steps_to_solve", "steps_run", "stopped", "eval_step", "lr",
                "baseline", "threshold"):
        assert fresh[key] == saved[key], key
    assert fresh["final_loss"] == pytest.approx(saved["final_loss"], rel=1e-5)
    assert fresh["eval_loss"] == pytest.approx(saved["eval_loss"], rel=1e-5)
    assert fresh["max_grad_norm"] == pytest.approx(saved["max_grad_norm"], rel=1e-5)
    assert fresh["clip_fraction"] == saved["clip_fraction"]
