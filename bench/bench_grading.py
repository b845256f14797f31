"""How fast does `rnnlab grade` go, and does it meet 300 students × 5 labs in 15 min on 2 cores?

Two measurements, both printed as medians:

1. Kernel cost, variants interleaved: start a sandboxed kernel and run the first lab's set-up
   cells as written, without their ``import matplotlib.pyplot``, or only ``import torch``, or
   fork it from a running kernel template (:mod:`rnnlab.grading.template`) and run the set-up
   cells; CPU seconds (user + sys of the kernel, the template and bwrap, sampled from /proc,
   what the template used before the measurement subtracted) and wall seconds.
2. End to end: ``rnnlab grade --jobs J`` (one kernel per student, reused for their labs, so
   the kernel cost of 1. is paid once per student; one checker process and one kernel template
   per worker), and the same run with ``--fresh-kernels`` (each student's kernel started in a
   new sandbox, the cost of 1. as written), back to back, on N
   synthetic students × the labs of ``solutions/`` (half answer everything right, half submit
   the untouched lab), or × 5 copies of the test fixture lab while ``solutions/`` is empty.
   Projection for 300 students × 5 labs: wall = wall per notebook × 1500, and cpu-bound = CPU
   per notebook × 1500 / 2 cores — the time on a dedicated 2-core machine, which a shared,
   loaded machine cannot show by wall time.

    python bench/bench_grading.py --students 6 --jobs 2 --repeats 5 --json grading.json

3. With ``--cluster W``: the same class graded with ``--jobs 1`` and on a local Dask cluster of
   W worker processes (``dask scheduler`` + ``dask worker --nworkers W``, as users start
   them), back to back: wall times, their ratio, CPU (the workers' included) and whether the
   two CSVs are the same bytes.

``--json PATH`` saves the figures with the command, date, machine and torch version
(:mod:`benchlib`); ``--threads`` sets torch's threads in this process only (kernels and
workers use one).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchlib
import nbformat
import psutil

from rnnlab.grading.checker import Checker
from rnnlab.grading.kernel import StudentKernel
from rnnlab.grading.labs import release
from rnnlab.grading.limits import Limits
from rnnlab.grading.notebook import parse_lab, read_notebook
from rnnlab.grading.sandbox import Sandbox, support
from rnnlab.grading.template import KernelTemplate
from rnnlab.grading.template import available as template_available

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "grading" / "solutions" / "fx_lab.ipynb"


class CpuSampler:
    """CPU seconds used by the descendants of ``root`` (a pid; with ``itself``, and by root).

    Sampled every ``period`` s from ``/proc``, each process's own user + system time. The
    kernels live in a PID namespace and are killed rather than reaped by us, so
    ``RUSAGE_CHILDREN`` misses them, and counts again what the grader's workers reaped;
    sampling counts every process once (missing at most its last ``period`` seconds).
    """

    def __init__(self, root: int, period: float = 0.1, itself: bool = False):
        self.root, self.period, self.seen = psutil.Process(root), period, {}
        self.roles: dict[tuple[int, float], str] = {}
        self.itself = itself
        self.before: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for process in [self.root] * self.itself + self.root.children(True):
                    try:
                        times = process.cpu_times()
                        key = (process.pid, process.create_time())
                        self.seen[key] = times.user + times.system
                        if key not in self.roles:
                            self.roles[key] = role(process.cmdline())
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> CpuSampler:
        for process in [self.root] * self.itself + self.root.children(True):
            try:
                times = process.cpu_times()
                self.before[(process.pid, process.create_time())] = times.user + times.system
            except psutil.Error:
                pass
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _used(self) -> dict[tuple[int, float], float]:
        """CPU seconds per process since :meth:`__enter__` (what it had used then subtracted)."""
        return {key: seconds - self.before.get(key, 0.0) for key, seconds in self.seen.items()}

    @property
    def seconds(self) -> float:
        return sum(self._used().values())

    def by_role(self) -> dict[str, float]:
        """CPU seconds of the kernels, the checker processes and the grader's own processes."""
        totals = dict.fromkeys(("kernel", "checker", "grader"), 0.0)
        for key, seconds in self._used().items():
            totals[self.roles.get(key, "grader")] += seconds
        return totals


def role(cmdline: list[str]) -> str:
    """What a process of ``rnnlab grade`` is: a student's kernel (bwrap, the control group's
    wrapper, ipykernel, the kernel template and the kernels it forks), a checker process, or
    the grader (its main process and workers)."""
    text = " ".join(cmdline)
    if "rnnlab.grading.checkproc" in text:
        return "checker"
    if any(word in text for word in ("ipykernel", "bwrap", "cgroup", "grading.templateproc")):
        return "kernel"
    return "grader"


def kernel_cost(setup_sources: list[str], template: KernelTemplate | None = None
                ) -> tuple[float, float]:
    """(wall, cpu) seconds to start a kernel (in a new sandbox, or forked from ``template``),
    run the set-up cells and exit."""
    if template is None:
        box = Sandbox(tempfile.mkdtemp(prefix="rnnlab-bench-"), support().bwrap, Limits())
    else:
        box = template.sandbox
    kernel = StudentKernel(box, startup_timeout=300, template=template)
    start = time.monotonic()
    try:
        with CpuSampler(os.getpid()) as sampler:
            outcomes = [kernel.start(time.monotonic() + 300)]
            outcomes += [kernel.execute(s, time.monotonic() + 300) for s in setup_sources]
        if any(o.status != "ok" for o in outcomes):
            raise RuntimeError(f"set-up failed in the kernel: {outcomes}")
        wall = time.monotonic() - start
    finally:
        kernel.kill()
        if template is None:
            box.cleanup()
        else:
            template.release()
    return wall, sampler.seconds


def grade_run(submissions: Path, source: Path, out: Path, jobs: int, *extra: str,
              workers: int | None = None) -> tuple[float, float, dict[str, float]]:
    """(wall, cpu, cpu by role) of ``rnnlab grade`` on ``submissions``; with ``workers`` (the
    pid of a ``dask worker`` command) the CPU of the cluster's workers counts too."""
    command = [sys.executable, "-m", "rnnlab", "grade", str(submissions), "--source",
               str(source), "--out", str(out), "--jobs", str(jobs), "--quiet",
               "--similarity", "0", *extra]
    start = time.monotonic()
    with subprocess.Popen(command, stdout=subprocess.DEVNULL) as process:
        with CpuSampler(process.pid, itself=True) as sampler, \
                CpuSampler(workers or process.pid) as cluster:
            if process.wait() != 0:
                raise RuntimeError(f"rnnlab grade failed with exit code {process.returncode}")
    roles = sampler.by_role()
    if workers is not None:
        for name, seconds in cluster.by_role().items():
            roles[name] += seconds
    return time.monotonic() - start, sum(roles.values()), roles


def local_cluster(work: Path, workers: int) -> tuple[list[subprocess.Popen], Path]:
    """A scheduler and ``workers`` worker processes, started as users start them."""
    dask = str(Path(sys.executable).with_name("dask"))
    file = work / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
             "start_new_session": True}
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--dashboard-address", ":0", "--scheduler-file", str(file)],
                                  **quiet)]
    while not file.exists():
        time.sleep(0.2)
    processes.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(file),
                                       "--nworkers", str(workers), "--nthreads", "1",
                                       "--no-dashboard"], **quiet))
    from distributed import Client

    with Client(scheduler_file=str(file), set_as_default=False) as client:
        client.wait_for_workers(workers, timeout=300)
    return processes, file


def stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def checker_start_cpu() -> float:
    """CPU seconds to start one checker process (Python, torch, matplotlib), paid per worker."""
    checker = Checker(Limits())
    with CpuSampler(os.getpid()) as sampler:
        checker.begin_lab("start")
        checker.run_setup("start", "pass")
        checker.close()
    return sampler.seconds


def template_start_cpu() -> float:
    """CPU seconds to start one kernel template (its imports), paid per worker; 0 without one."""
    if not template_available():
        return 0.0
    template = KernelTemplate(Limits())
    try:
        with CpuSampler(os.getpid()) as sampler:
            template.start(time.monotonic() + 300)
    finally:
        template.close()
    return sampler.seconds


def source_labs(work: Path) -> Path:
    """solutions/ when it has notebooks, else 5 renamed copies of the fixture lab."""
    solutions = ROOT / "solutions"
    if sorted(solutions.glob("*.ipynb")):
        return solutions
    fake = work / "source"
    fake.mkdir()
    for index in range(1, 6):
        (fake / f"{index:02d}_fixture.ipynb").write_bytes(FIXTURE.read_bytes())
    return fake


def make_submissions(source: Path, work: Path, students: int) -> Path:
    release(source, work / "labs")
    submissions = work / "submissions"
    for path in sorted(source.glob("*.ipynb")):
        solution = read_notebook(path)
        answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
                   if c.metadata["nbgrader"].get("solution")}
        lab = read_notebook(work / "labs" / path.name)
        for number in range(students):
            notebook = copy.deepcopy(lab)
            if number % 2 == 0:
                for cell in notebook.cells:
                    cell.source = answers.get(cell.metadata["nbgrader"]["grade_id"], cell.source)
            folder = submissions / f"student{number:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, folder / path.name)
    return submissions


FORKED = "forked from a kernel template, the lab's set-up cells"


def end_to_end(submissions: Path, source: Path, work: Path, jobs: int,
               fixed_start: dict[str, float], *extra: str) -> dict:
    """Grade the class once with ``extra`` options; the figures and the 300 x 5 projections.

    ``fixed_start``: CPU seconds to start the grader, a checker and a kernel template, paid
    once per run (grader, workers) or per worker (checker, template).
    """
    name = "grades" + "".join(extra)
    wall, cpu, roles = grade_run(submissions, source, work / f"{name}.csv", jobs, *extra)
    details = json.loads((work / f"{name}_details.json").read_text())
    count = len(details)
    per_notebook = statistics.median(d["seconds"] for d in details)
    flagged = [(d["student"], d["lab"], d["flags"], [(t["test"], t["flags"], t["message"])
                                                     for t in d["tests"] if t["flags"]])
               for d in details if d["flags"] or any(t["flags"] for t in d["tests"])]
    for entry in flagged:
        print("flagged:", *entry)
    processes = 1 + (jobs if jobs > 1 else 0)       # main process (+ workers)
    fixed = fixed_start["grader"] * processes + \
        (fixed_start["checker"] + fixed_start["template"]) * jobs
    marginal = max(cpu - fixed, 0.0) / count
    total = 300 * 5
    label = " ".join(extra) or "(kernel template)"
    print(f"{label}: graded {count} notebooks ({len(flagged)} flagged) with --jobs {jobs}: "
          f"wall {wall:.1f} s, cpu {cpu:.1f} s ("
          + ", ".join(f"{k} {v:.1f} s" for k, v in roles.items())
          + f"); fixed per run {fixed:.1f} s")
    print(f"  per notebook: {wall / count:.2f} s wall (run / notebooks), {per_notebook:.2f} s "
          f"median inside a worker, {cpu / count:.2f} s cpu, {marginal:.2f} s cpu beyond the "
          f"run's fixed start-up")
    print(f"  projected 300 students x 5 labs: {wall / count * total / 60:.1f} min at this "
          f"run's wall rate; {cpu / count * total / 2 / 60:.1f} min cpu-bound on 2 dedicated "
          f"cores; {(fixed + marginal * total) / 2 / 60:.1f} min with the start-up paid once "
          f"(goal <= 15 min)")
    return {
        "options": list(extra), "students": len({d["student"] for d in details}),
        "labs": len({d["lab"] for d in details}), "notebooks": count, "jobs": jobs,
        "flagged": len(flagged), "wall_s": wall, "cpu_s": cpu, "cpu_by_role_s": roles,
        "fixed_cpu_s": fixed, "fixed_cpu_grader_start_s": fixed_start["grader"],
        "fixed_cpu_checker_start_s": fixed_start["checker"],
        "fixed_cpu_template_start_s": fixed_start["template"],
        "wall_per_notebook_s": wall / count, "cpu_per_notebook_s": cpu / count,
        "marginal_cpu_per_notebook_s": marginal, "median_in_worker_s": per_notebook,
        "projected_300x5_wall_min": wall / count * total / 60,
        "projected_300x5_cpu_bound_2_cores_min": cpu / count * total / 2 / 60,
        "projected_300x5_marginal_2_cores_min": (fixed + marginal * total) / 2 / 60}


def main() -> None:
    parser = benchlib.parser(__doc__)
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="A/B kernel repeats")
    parser.add_argument("--cluster", type=int, default=0, metavar="WORKERS",
                        help="also grade on a local Dask cluster of WORKERS worker processes "
                             "and compare its wall time with --jobs 1")
    args = parser.parse_args()
    benchlib.apply_threads(args.threads)
    results: dict = {"sandbox": support().describe(), "kernel": {}}
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as tmp:
        work = Path(tmp)
        source = source_labs(work)
        labs = sorted(source.glob("*.ipynb"))
        first = parse_lab(read_notebook(labs[0]), labs[0].stem)
        setup = [c.source for c in first.cells if c.kind == "setup" and not c.skip]
        print(f"sandbox: {results['sandbox']}; labs: {[p.stem for p in labs]}")
        no_pyplot = [s.replace("import matplotlib.pyplot as plt\n", "") for s in setup]
        variants = {"the lab's set-up cells": setup,
                    "set-up without `import matplotlib.pyplot`": no_pyplot,
                    "`import torch` only": ["import torch"]}
        costs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        template = KernelTemplate(Limits()) if template_available() else None
        if template is not None:
            variants["forked from a kernel template, the lab's set-up cells"] = setup
            costs[FORKED] = []
            template.start(time.monotonic() + 300)
        try:
            for _ in benchlib.progress(range(args.repeats), desc="kernels"):  # interleaved
                for name, sources in variants.items():
                    costs[name].append(kernel_cost(sources, template if name == FORKED
                                                   else None))
        finally:
            if template is not None:
                template.close()
        base = costs["the lab's set-up cells"]
        for name, values in costs.items() if args.repeats else ():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            ratio = statistics.median(v[1] / b[1] for v, b in zip(values, base, strict=True))
            results["kernel"][name] = {"wall_s": wall, "cpu_s": cpu, "cpu_ratio": ratio}
            print(f"kernel start + set-up of {labs[0].stem}, {name}: median wall {wall:.2f} s, "
                  f"cpu {cpu:.2f} s ({ratio:.2f} x the lab's, median of paired ratios)")

        submissions = make_submissions(source, work, args.students)
        empty = work / "empty"
        empty.mkdir()
        _, fixed_grader, _ = grade_run(empty, source, work / "empty.csv", 1)
        fixed = {"grader": fixed_grader, "checker": checker_start_cpu(),
                 "template": template_start_cpu()}
        results["end_to_end"] = end_to_end(submissions, source, work, args.jobs, fixed)
        results["end_to_end_fresh_kernels"] = end_to_end(
            submissions, source, work, args.jobs, dict(fixed, template=0.0), "--fresh-kernels")
        same = (work / "grades.csv").read_bytes() == (work / "grades--fresh-kernels.csv"
                                                      ).read_bytes()
        ratio = results["end_to_end_fresh_kernels"]["cpu_s"] / results["end_to_end"]["cpu_s"]
        results["template_vs_fresh"] = {"cpu_ratio": ratio, "same_csv": same}
        print(f"fresh kernels / template: {ratio:.2f} x the CPU; same CSV: {same}")
        if args.cluster:
            processes, file = local_cluster(work, args.cluster)
            try:
                one = grade_run(submissions, source, work / "one.csv", 1)
                many = grade_run(submissions, source, work / "cluster.csv", 1, "--scheduler",
                                 str(file), workers=processes[1].pid)
            finally:
                stop(processes)
            same = (work / "one.csv").read_bytes() == (work / "cluster.csv").read_bytes()
            results["cluster"] = {
                "workers": args.cluster, "jobs_1_wall_s": one[0], "jobs_1_cpu_s": one[1],
                "cluster_wall_s": many[0], "cluster_cpu_s": many[1],
                "speed_up_wall": one[0] / many[0], "same_csv": same}
            print(f"--jobs 1: wall {one[0]:.1f} s, cpu {one[1]:.1f} s; {args.cluster} Dask "
                  f"workers: wall {many[0]:.1f} s, cpu {many[1]:.1f} s; speed-up "
                  f"{one[0] / many[0]:.2f}x; same CSV: {same}")
    benchlib.save(args.json, "bench_grading", results)


if __name__ == "__main__":
    main()
