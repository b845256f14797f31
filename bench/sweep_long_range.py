"""The long-range sweep of chapter 8: four models, with and without clipping, on four tasks.

Every cell of the grid (task, T, model, clip, seed) is one :func:`rnnlab.long_range.run_cell`:
Adam on fresh batches of 32 sequences, hidden size 32, the recipe's learning rate, the held-out
loss every 25 steps, stopped as soon as it is at most ``SOLVED_FRACTION[task]`` times the
task's baseline, or after the task's step budget. The grid (``GRID``): adding at T = 50, 100,
200; the 8x8 digits pixel by pixel (T = 64); temporal order at T = 20, 50; copy at T = 20, 40;
models tanh, irnn, lstm, gru; clip None or a norm of 1; seeds 0, 1, 2.

Results go to ``--json`` (the book reads ``chapters/data/long_range.json``) after every cell, so
an interrupted sweep keeps what it finished; ``--resume`` skips the cells already in that file
(when it was written with the same budgets and sizes). A summary table is printed at the end.

Run (about 46 minutes of training CPU at one thread, summed over the 192 runs; ``--jobs 2``
halves the wall time on two idle cores)::

    nice -n 10 python bench/sweep_long_range.py --threads 1 --jobs 2 \\
        --json chapters/data/long_range.json

``--tasks adding --seeds 1`` and the like run a part of the grid.
"""

from __future__ import annotations

import json
import multiprocessing
import sys

from benchlib import apply_threads, parser, progress, save

from rnnlab.long_range import RECIPES, SOLVED_FRACTION, run_cell, summarize

SETTINGS = {"hidden_size": 32, "batch_size": 32, "eval_every": 25}
CLIPS = (None, 1.0)
# task: (lengths T, step budget). Budgets are fixed per task, not per T, so that a longer T
# shows up as more steps or a failure, never as a larger allowance.
GRID = {
    "adding": ((50, 100, 200), 1500),
    "digits": ((64,), 1000),
    "temporal_order": ((20, 50), 1500),
    "copy": ((20, 40), 1500),
}
_KEY = ("task", "seq_len", "model", "clip", "seed")


def cells(tasks, models, seeds):
    """Every (task, T, model, clip, seed, budget), in the order of ``GRID``."""
    for task in tasks:
        lengths, budget = GRID[task]
        for seq_len in lengths:
            for model in models:
                for clip in CLIPS:
                    for seed in seeds:
                        yield task, seq_len, model, clip, seed, budget


def _previous(path) -> list[dict]:
    if path is None or not path.exists():
        return []
    record = json.loads(path.read_text())
    return record["results"]["cells"]


def _summary(results: list[dict]) -> None:
    print(f"{'task':15} {'T':>4} {'model':5} {'clip':>4} {'solved':>6} {'steps':>6} "
          f"{'loss/base':>9} {'diverged':>8}")
    for row in summarize(results):
        steps = "-" if row["steps_median"] is None else f"{row['steps_median']:.0f}"
        print(f"{row['task']:15} {row['seq_len']:4d} {row['model']:5} {row['clip'] or '-':>4} "
              f"{row['solved']:>3}/{row['runs']:<2} {steps:>6} {row['ratio_median']:9.3f} "
              f"{row['diverged']:8d}")


def _run(cell: tuple) -> dict:
    task, seq_len, model, clip, seed, budget = cell
    return run_cell(task, model, seq_len, seed, clip, steps=budget, **SETTINGS)


def _worker_init(threads: int | None) -> None:
    apply_threads(threads)


def _record(results: list[dict]) -> dict:
    return {"grid": {task: {"lengths": list(lengths), "steps": budget}
                     for task, (lengths, budget) in GRID.items()},
            "settings": SETTINGS, "clips": list(CLIPS), "solved_fraction": SOLVED_FRACTION,
            "recipes": {name: vars(recipe) for name, recipe in RECIPES.items()},
            "cells": sorted(results, key=_order)}


def _order(result: dict) -> tuple:
    task = tuple(GRID).index(result["task"])
    model = tuple(RECIPES).index(result["model"])
    return task, result["seq_len"], model, result["clip"] or 0.0, result["seed"]


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--tasks", nargs="+", choices=tuple(GRID), default=tuple(GRID))
    args.add_argument("--models", nargs="+", choices=tuple(RECIPES), default=tuple(RECIPES))
    args.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per cell (default 3)")
    args.add_argument("--jobs", type=int, default=1,
                      help="cells run at once, each in its own process with --threads "
                           "threads (default 1); results do not depend on it")
    args.add_argument("--resume", action="store_true",
                      help="skip the cells already saved in --json")
    options = args.parse_args()
    threads = apply_threads(options.threads)
    todo = list(cells(options.tasks, options.models, range(options.seeds)))
    results = _previous(options.json) if options.resume else []
    done = {tuple(r[k] for k in _KEY) for r in results
            if all(r[k] == v for k, v in SETTINGS.items())
            and r["steps_budget"] == GRID[r["task"]][1]}
    results = [r for r in results if tuple(r[k] for k in _KEY) in done]
    todo = [c for c in todo if c[:5] not in done]
    print(f"{len(todo)} cells to run ({len(done)} already saved), {options.jobs} job(s) of "
          f"{threads} thread(s)", file=sys.stderr)
    bar = progress(total=len(todo), desc="cells")
    context = multiprocessing.get_context("spawn")
    with context.Pool(options.jobs, _worker_init, (options.threads,)) as pool:
        for index, result in enumerate(pool.imap_unordered(_run, todo), 1):
            results.append(result)
            bar.update()
            outcome = (f"solved at {result['steps_to_solve']}" if result["solved"] else
                       f"{result['stopped']} after {result['steps_run']}")
            print(f"[{index}/{len(todo)}] {result['task']} T={result['seq_len']} "
                  f"{result['model']} clip={result['clip']} seed={result['seed']}: {outcome}, "
                  f"{result['cpu_seconds']:.0f} s CPU", flush=True)
            save(options.json, "sweep_long_range", _record(results))
    bar.close()
    _summary(sorted(results, key=_order))


if __name__ == "__main__":
    main()
