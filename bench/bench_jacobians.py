"""All T+1 products ∂s_T/∂s_t: rnnlab.jacobians against the naive autograd way, same run.

* ``naive``: for each t, ``torch.autograd.functional.jacobian`` of s_T with respect to s_t,
  running torch's fused module from s_t over x_{t+1..T} (the states s_t are precomputed and
  not timed, which favours the naive way).
* ``fast``: :func:`rnnlab.jacobians.state_jacobians` (closed-form step Jacobians, then the
  backward cumulative product).

The two are interleaved (one naive t, then one fast run) so that load drift hits both; ``fast``
is the median of its runs. For RNN tanh the naive way is run for every t; for LSTM and GRU it is
run on every ``--stride``-th t only and its total EXTRAPOLATED by a least-squares fit
cost(t) = a + b·(T − t) summed over all t (the same extrapolation is printed for tanh next to its
measured total, as a check). The largest relative difference between the two results is
printed over the measured t whose product is above 1e-20 (below, float32 reaches its
subnormals and both ways lose their digits).

Then the time of :func:`rnnlab.jacobians.jacobian_log_norms` at T = ``--long`` (10,000) in
float32, wall clock and CPU time of this process (median of 3), for default-initialised models
and for a *trained-like* LSTM, a stand-in for one trained on a long-memory task: recurrent blocks
orthogonal and the forget gate held open (``forget_bias_(lstm, 3)``, f ≈ 0.95). Its product
decays slowly and keeps many comparable singular values for hundreds of steps (numerical rank
35 of 128 at lag 256, against 8 for the default LSTM), the harder case for the long products.

Every number printed is in the results saved by ``--json PATH`` (see ``bench/benchlib.py``),
with, for each long product, ln ‖∂s_T/∂s_t‖ at about 100 lags T − t (the book's "Performance"
page draws them).

Run: ``python bench/bench_jacobians.py [--hidden 64 --steps 200 --stride 10 --json PATH]``.
"""

from __future__ import annotations

import statistics
import time

import benchlib
import torch

from rnnlab.init import forget_bias_, orthogonal_
from rnnlab.jacobians import jacobian_log_norms, state_jacobians

MODELS = {"RNN tanh": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
LONG = (("RNN tanh", 32, "default"), ("RNN tanh", 64, "default"), ("GRU", 64, "default"),
        ("LSTM", 32, "default"), ("LSTM", 64, "default"), ("LSTM", 64, "trained-like"))


def _final_state(model, x, s):
    if isinstance(model, torch.nn.LSTM):
        h, c = s.chunk(2, dim=-1)
        _, (hn, cn) = model(x, (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))
        return torch.cat((hn[0], cn[0]), -1)
    return model(x, s.unsqueeze(0).contiguous())[1][0]


def _states(model, x, size):
    """s_0..s_{T-1} by torch's module (s_0 = 0), as (1, S) tensors."""
    s0 = x.new_zeros((1, size))
    return [s0] + [_final_state(model, x[:t], s0).detach() for t in range(1, x.shape[0])]


def _naive(model, x, states, t):
    return torch.autograd.functional.jacobian(lambda s: _final_state(model, x[t:], s), states[t])


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _extrapolate(ts, costs, steps):
    """Least-squares cost(t) = a + b (T - t) on the measured t, summed over t = 0..T-1."""
    lags = torch.tensor([steps - t for t in ts], dtype=torch.float64)
    A = torch.stack((torch.ones_like(lags), lags), dim=1)
    a, b = torch.linalg.lstsq(A, torch.tensor(costs, dtype=torch.float64).unsqueeze(1)).solution
    all_lags = torch.arange(1, steps + 1, dtype=torch.float64)
    return float((a + b * all_lags).sum())


def compare(name, hidden, steps, input_size, stride) -> dict[str, object]:
    torch.manual_seed(0)
    model = MODELS[name](input_size, hidden)
    size = 2 * hidden if name == "LSTM" else hidden
    x = torch.randn(steps, 1, input_size)
    states = _states(model, x, size)
    state_jacobians(model, x)                                    # warm-up
    ts = list(range(0, steps, 1 if name == "RNN tanh" else stride))
    naive, fast = {}, []
    check = 0.0
    for t in benchlib.progress(ts, desc=f"naive vs fast, {name}"):
        naive[t], jac = _timed(lambda t=t: _naive(model, x, states, t))
        elapsed, products = _timed(lambda: state_jacobians(model, x))
        fast.append(elapsed)
        scale = jac.abs().max()
        if scale > 1e-20:                  # smaller products reach float32's subnormals
            check = max(check, float((products[t, 0] - jac[0, :, 0, :]).abs().max() / scale))
    fast_s = statistics.median(fast)
    subset = [t for t in ts if t % stride == 0]
    estimate = _extrapolate(subset, [naive[t] for t in subset], steps)
    measured = name == "RNN tanh"
    naive_s = sum(naive.values()) if measured else estimate
    how = (f"measured for all {steps} t" if measured
           else f"EXTRAPOLATED from {len(subset)} of {steps} t")
    note = (f"  (extrapolation from every {stride}th t would give {estimate:.2f} s)"
            if measured else "")
    print(f"{name:8s} H={hidden} T={steps}: naive {naive_s:7.2f} s ({how}), "
          f"fast {fast_s * 1e3:6.2f} ms (median of {len(fast)}), "
          f"ratio {naive_s / fast_s:5.0f}x; max rel. diff where |naive| > 1e-20: {check:.1e}"
          f"{note}")
    return {"hidden": hidden, "steps": steps, "state_size": size, "naive_s": naive_s,
            "naive_measured": measured, "naive_t_measured": len(ts if measured else subset),
            "naive_extrapolated_s": estimate, "fast_s": fast_s, "fast_runs": len(fast),
            "ratio": naive_s / fast_s, "max_rel_diff": check}


def _long_model(name, hidden, init, input_size):
    torch.manual_seed(0)
    model = MODELS[name](input_size, hidden)
    if init == "trained-like":
        forget_bias_(orthogonal_(model), 3.0)
    return model


def log_norm_time(name, hidden, init, steps, input_size) -> dict[str, object]:
    model = _long_model(name, hidden, init, input_size)
    x = torch.randn(steps, 1, input_size)
    walls, cpus, result = [], [], None
    for _ in benchlib.progress(range(3), desc=f"log-norms, {name} H={hidden} {init}"):
        cpu = time.process_time()
        elapsed, result = _timed(lambda: jacobian_log_norms(model, x))
        cpus.append(time.process_time() - cpu)
        walls.append(elapsed)
    finite = bool(result.isfinite().all())
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"jacobian_log_norms {name:8s} H={hidden} {init:12s} T={steps} float32: "
          f"{wall:.2f} s wall, {cpu:.2f} s CPU (median of 3), all finite: {finite}, "
          f"log-norm at t=0: {result[0, 0].item():.0f}")
    lags = list(range(0, steps + 1, max(1, steps // 100)))      # ~100 points, lag T - t
    return {"model": name, "hidden": hidden, "init": init, "steps": steps, "wall_s": wall,
            "cpu_s": cpu, "runs": len(walls), "all_finite": finite,
            "log_norm_t0": result[0, 0].item(), "lags": lags,
            "log_norm_by_lag": [result[steps - lag, 0].item() for lag in lags]}


def main():
    parser = benchlib.parser(__doc__)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--input", type=int, default=8)
    parser.add_argument("--stride", type=int, default=10)
    parser.add_argument("--long", type=int, default=10_000)
    args = parser.parse_args()
    threads = benchlib.apply_threads(args.threads)
    print(f"torch {torch.__version__}, {threads} threads, CPU, float32, B=1")
    results = {"sizes": {"hidden": args.hidden, "steps": args.steps, "input": args.input,
                         "stride": args.stride, "long": args.long},
               "products": {name: compare(name, args.hidden, args.steps, args.input,
                                          args.stride) for name in MODELS},
               "log_norms": [log_norm_time(name, hidden, init, args.long, args.input)
                             for name, hidden, init in LONG]}
    benchlib.save(args.json, "bench_jacobians", results)


if __name__ == "__main__":
    main()
