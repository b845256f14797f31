"""Forward+backward time of rnnlab's models relative to torch's fused modules.

For each cell type, times (interleaved, median of many repeats, same process):

* ``torch``: ``torch.nn.X`` fused ``forward`` (the reference, ratio 1),
* ``forward``: ``rnnlab.X.forward`` (inherited, so ≈ 1),
* ``unroll``: ``rnnlab.X.unroll`` (step by step, every state visible to autograd),
* ``unroll+states``: ``unroll(..., return_states=True)``, which also hands those states out,
* ``cell loop``: a Python loop of ``torch.nn.XCell`` — the naive step-by-step baseline.

Each sample is the fastest of three back-to-back calls (an interruption by another process only
ever adds time), samples of the variants alternate, and the median sample is reported. The
results (seconds per forward+backward, ratios to ``torch``, sizes) are printed and, with
``--json PATH``, saved with their provenance (see ``bench/benchlib.py``).

Run: ``python bench/bench_models.py [--batch 32 --steps 100 --input 2 --hidden 128
--threads 1 --json results/bench_models.json]``.
"""

from __future__ import annotations

import benchlib
import torch

import rnnlab
from rnnlab.timing import interleaved_medians

VARIANTS = ("torch", "forward", "unroll", "unroll+states", "cell loop")


def _cell_loop(cell):
    def run(x):
        h = None
        outputs = []
        for x_t in x:
            h = cell(x_t, h)
            outputs.append(h[0] if isinstance(h, tuple) else h)
        return torch.stack(outputs)
    return run


def _fwd_bwd(fn, x):
    def run():
        out = fn(x)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()
    return run


def measure(kind: str, batch: int, steps: int, input_size: int, hidden: int,
            repeats: int) -> dict[str, float]:
    """Median seconds of one forward+backward for each of :data:`VARIANTS`
    (:func:`rnnlab.timing.interleaved_medians`)."""
    torch.manual_seed(0)
    ours = getattr(rnnlab, kind)(input_size, hidden)
    theirs = getattr(torch.nn, kind)(input_size, hidden)
    theirs.load_state_dict(ours.state_dict())
    cell = getattr(torch.nn, kind + "Cell")(input_size, hidden)
    x = torch.randn(steps, batch, input_size)
    runs = {
        "torch": _fwd_bwd(theirs, x),
        "forward": _fwd_bwd(ours, x),
        "unroll": _fwd_bwd(ours.unroll, x),
        "unroll+states": _fwd_bwd(lambda x: ours.unroll(x, return_states=True)[:2], x),
        "cell loop": _fwd_bwd(_cell_loop(cell), x),
    }
    return interleaved_medians(runs, repeats=repeats, calls=3)


def main() -> None:
    parser = benchlib.parser(__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--input", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    threads = benchlib.apply_threads(args.threads)
    print(f"forward+backward, B={args.batch} T={args.steps} I={args.input} H={args.hidden}, "
          f"torch {torch.__version__}, {threads} threads, median of {args.repeats} interleaved "
          f"samples (each the best of 3); ratio = time / torch fused")
    print(f"{'model':6} {'torch ms':>9} " + " ".join(f"{v:>13}" for v in VARIANTS[1:]))
    kinds = ("LSTM", "GRU", "RNN")
    results: dict[str, object] = {
        "sizes": {"batch": args.batch, "steps": args.steps, "input": args.input,
                  "hidden": args.hidden, "repeats": args.repeats},
        "variants": list(VARIANTS), "models": {}}
    with benchlib.progress(total=len(kinds), desc="bench_models") as bar:
        for kind in kinds:
            seconds = measure(kind, args.batch, args.steps, args.input, args.hidden,
                              args.repeats)
            bar.update()
            ratios = {name: seconds[name] / seconds["torch"] for name in VARIANTS}
            states_cost = seconds["unroll+states"] / seconds["unroll"]
            results["models"][kind] = {"seconds": seconds, "ratio_to_torch": ratios,
                                       "return_states_over_unroll": states_cost}
            bar.write(f"{kind:6} {seconds['torch'] * 1e3:9.2f} "
                      + " ".join(f"{ratios[v]:12.2f}x" for v in VARIANTS[1:]))
    for kind in kinds:
        cost = results["models"][kind]["return_states_over_unroll"]
        print(f"{kind}: unroll with return_states=True takes {cost:.3f}x the time of unroll")
    benchlib.save(args.json, "bench_models", results)


if __name__ == "__main__":
    main()
