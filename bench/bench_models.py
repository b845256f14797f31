"""Forward+backward time of rnnlab's models relative to torch's fused modules.

For each cell type, times (interleaved, median of many repeats, same process):

* ``torch``: ``torch.nn.X`` fused ``forward`` (the reference, ratio 1),
* ``forward``: ``rnnlab.X.forward`` (inherited, so ≈ 1),
* ``unroll``: ``rnnlab.X.unroll`` (step by step, every h_t visible to autograd),
* ``cell loop``: a Python loop of ``torch.nn.XCell`` — the naive step-by-step baseline.

Each sample is the fastest of three back-to-back calls (an interruption by another process only
ever adds time), samples of the four variants alternate, and the median sample is reported.

Run: ``python bench/bench_models.py [--batch 32 --steps 100 --input 2 --hidden 128 --threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rnnlab


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


def measure(kind: str, batch: int, steps: int, input_size: int, hidden: int, repeats: int):
    torch.manual_seed(0)
    ours = getattr(rnnlab, kind)(input_size, hidden)
    theirs = getattr(torch.nn, kind)(input_size, hidden)
    theirs.load_state_dict(ours.state_dict())
    cell = getattr(torch.nn, kind + "Cell")(input_size, hidden)
    x = torch.randn(steps, batch, input_size)
    variants = {
        "torch": _fwd_bwd(theirs, x),
        "forward": _fwd_bwd(ours, x),
        "unroll": _fwd_bwd(ours.unroll, x),
        "cell loop": _fwd_bwd(_cell_loop(cell), x),
    }
    times = {name: [] for name in variants}
    for run in variants.values():                      # warm-up
        run()
    for _ in range(repeats):
        for name, run in variants.items():             # interleaved: drift hits all alike
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            times[name].append(best)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--input", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"forward+backward, B={args.batch} T={args.steps} I={args.input} H={args.hidden}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of "
          f"{args.repeats} interleaved samples (each the best of 3); ratio = time / torch fused")
    print(f"{'model':6} {'torch ms':>9} {'forward':>8} {'unroll':>8} {'cell loop':>10}")
    for kind in ("LSTM", "GRU", "RNN"):
        t = measure(kind, args.batch, args.steps, args.input, args.hidden, args.repeats)
        base = t["torch"]
        print(f"{kind:6} {base * 1e3:9.2f} {t['forward'] / base:7.2f}x {t['unroll'] / base:7.2f}x "
              f"{t['cell loop'] / base:9.2f}x")


if __name__ == "__main__":
    main()
