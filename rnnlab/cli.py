"""The ``rnnlab`` command line: instructor tooling.

``rnnlab release SOURCE DEST`` turns solution notebooks into student labs,
``rnnlab grade SUBMISSIONS --source SOURCE --out grades.csv`` grades a folder of submissions,
``rnnlab feedback DETAILS --out DIR`` writes per-student feedback from a grading run,
``rnnlab labs copy DEST`` copies the student labs out of the repository to work on, and
``rnnlab kernel install|list`` manages the ``rnnlab-cuda`` Jupyter kernel.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rnnlab import __version__


def _release(args: argparse.Namespace) -> int:
    from rnnlab import grading

    for path in grading.release(args.source, args.dest):
        print(path)
    return 0


def _grade(args: argparse.Namespace) -> int:
    os.environ["RNNLAB_DEVICE"] = "cpu"            # tests compare against CPU tensors
    from tqdm import tqdm

    from rnnlab import grading

    limits = grading.Limits(args.cell_timeout, args.notebook_timeout,
                            grading.parse_memory(args.memory), args.setup_timeout,
                            grading.parse_memory(args.scratch))
    sandbox = "require" if args.require_sandbox else "off" if args.no_sandbox else "auto"
    bar = None

    def progress(total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="student", disable=args.quiet, file=sys.stderr)
        else:
            bar.update(1)

    try:
        results, isolated = grading.grade(args.submissions, args.source, limits=limits,
                                          jobs=args.jobs, sandbox=sandbox, progress=progress,
                                          tmp_root=args.tmp_dir, scheduler=args.scheduler,
                                          template=not args.fresh_kernels)
    except (grading.SandboxUnavailable, ValueError, ImportError) as exc:
        print(f"rnnlab grade: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    hidden = grading.hidden_folders(args.submissions)
    if hidden:
        print(f"WARNING: {len(hidden)} folder(s) whose names start with '.' were not graded: "
              f"{', '.join(map(repr, hidden))}; rename a student's folder to grade it.",
              file=sys.stderr)
    found = grading.support()
    if not isolated:
        print("WARNING: student code ran WITHOUT a sandbox (bwrap missing or --no-sandbox): it "
              "could read the solutions and every file this user can, and use the network. "
              "Install bubblewrap, or pass --require-sandbox to refuse.", file=sys.stderr)
    elif not found.seccomp:
        print("WARNING: the sandbox ran without its seccomp filter (libseccomp2 missing): "
              "student code could start processes. Install libseccomp2, or pass "
              "--require-sandbox to refuse.", file=sys.stderr)
    elif not args.quiet:
        kernels = "a fresh sandbox per kernel" if args.fresh_kernels \
            else "kernels forked from a kernel template"
        print(f"sandbox: {found.describe()}; {kernels}", file=sys.stderr)
    out = Path(args.out)
    grading.write_grades(results, out)
    grading.write_summary(results, out.with_name(out.stem + "_summary.csv"))
    details = grading.write_details(results, out.with_name(out.stem + "_details.json"))
    if args.feedback:
        grading.write_feedback(results, args.feedback)
    print(f"graded {len(results)} notebooks → {out} (details: {details})")
    if args.similarity > 0:
        from rnnlab.grading.similarity import similar_pairs, write_similarity

        pairs = similar_pairs(args.submissions, args.source, threshold=args.similarity)
        path = write_similarity(pairs, out.with_name(out.stem + "_similarity.csv"))
        print(f"{len(pairs)} pairs of students with similar answers → {path} (a signal to "
              "read both notebooks, not a verdict: nothing in the grades changes)")
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from rnnlab import grading

    paths = grading.write_feedback(grading.read_details(args.details), args.out)
    print(f"wrote {len(paths)} feedback files to {args.out}")
    return 0


def _labs_copy(args: argparse.Namespace) -> int:
    from rnnlab.grading.labs import copy_labs

    try:
        paths = copy_labs(args.dest, args.source)
    except (FileExistsError, FileNotFoundError) as exc:
        print(f"rnnlab labs copy: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    print(f"copied {len(paths)} labs; work on them with:  jupyter lab {args.dest}")
    return 0


def _kernel_install(args: argparse.Namespace) -> int:
    from rnnlab.kernels import CUDA_KERNEL, install_cuda_kernel

    path = install_cuda_kernel(user=args.user, sys_prefix=args.sys_prefix, prefix=args.prefix)
    print(f"installed kernel {CUDA_KERNEL} (RNNLAB_DEVICE=cuda) in {path}")
    return 0


def _kernel_list(args: argparse.Namespace) -> int:
    from rnnlab.kernels import list_kernels

    kernels = list_kernels()
    width = max([len(k["name"]) for k in kernels] + [4])
    print(f"{'name':{width}}  {'RNNLAB_DEVICE':13}  path")
    for k in kernels:
        print(f"{k['name']:{width}}  {k['device'] or '(unset)':13}  {k['path']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnlab",
        description="Instructor tooling of the rnnlab course: release labs, grade submissions.",
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    release = commands.add_parser("release", help="write student labs from solution notebooks")
    release.add_argument("source", help="directory of solution notebooks (solutions/)")
    release.add_argument("dest", help="directory to write the labs to (labs/)")
    release.set_defaults(func=_release)

    grade = commands.add_parser(
        "grade", help="grade SUBMISSIONS/<student>/<lab>.ipynb into a CSV",
        description="Rebuild each submission from the instructor's source, run the student's "
                    "answer cells in a sandboxed kernel (one per student, emptied between "
                    "labs) and the tests in the grader. Writes "
                    "OUT, OUT_summary.csv, OUT_details.json (the input of `feedback`) and "
                    "OUT_similarity.csv.")
    grade.add_argument("submissions", help="directory with one sub-directory per student")
    grade.add_argument("--source", required=True, help="directory of solution notebooks")
    grade.add_argument("--out", default="grades.csv", help="CSV to write (default grades.csv)")
    grade.add_argument("--jobs", type=int, default=1, help="students graded in parallel "
                       "(each in one kernel, reused for their labs)")
    grade.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="grade on a Dask cluster: the scheduler's address (tcp://host:8786) "
                            "or its --scheduler-file; each student is one task, graded in the "
                            "sandbox of the worker's machine (needs rnnlab[cluster]; the "
                            "submissions and --source at the same paths on the workers)")
    grade.add_argument("--cell-timeout", type=float, default=60.0,
                       help="seconds per cell or test (default 60)")
    grade.add_argument("--setup-timeout", type=float, default=120.0,
                       help="seconds for kernel start and each instructor set-up cell "
                            "(default 120)")
    grade.add_argument("--notebook-timeout", type=float, default=600.0,
                       help="wall-clock seconds per lab of a student (default 600)")
    grade.add_argument("--memory", default="4G",
                       help="memory of a student's kernel, and of the checks of one test "
                            "(default 4G)")
    grade.add_argument("--scratch", default="256M",
                       help="size of a kernel's private in-memory /tmp (default 256M)")
    grade.add_argument("--feedback", metavar="DIR", help="also write DIR/<student>.md")
    grade.add_argument("--tmp-dir", metavar="DIR", default=None,
                       help="where the kernels' private directories go (default: the "
                            "system's temporary directory)")
    box = grade.add_mutually_exclusive_group()
    box.add_argument("--require-sandbox", action="store_true",
                     help="fail instead of running student code without bwrap and its "
                          "seccomp filter")
    box.add_argument("--no-sandbox", action="store_true",
                     help="run student code without bwrap (trusted submissions only)")
    grade.add_argument("--similarity", type=float, default=0.8, metavar="SCORE",
                       help="write OUT_similarity.csv: pairs of students whose answers to a "
                            "lab score at least SCORE (0-1, default 0.8) once code given in "
                            "the lab and code most of the class shares are set aside; 0 "
                            "turns it off. A signal for a human, never a penalty")
    grade.add_argument("--fresh-kernels", action="store_true",
                       help="start each student's kernel in a new sandbox rather than fork it "
                            "from a kernel template that imported torch once (slower: about "
                            "4 CPU seconds per student)")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")
    grade.set_defaults(func=_grade)

    feedback = commands.add_parser("feedback", help="write per-student feedback (markdown)")
    feedback.add_argument("details", help="the *_details.json written by `rnnlab grade`")
    feedback.add_argument("--out", required=True, help="directory for <student>.md files")
    feedback.set_defaults(func=_feedback)

    labs = commands.add_parser(
        "labs", help="the student labs: copy them out of the repository to work on",
        description="Students work on a copy of labs/, not on the repository's files (Jupyter "
                    "saves as you go: working in labs/ would change tracked files).")
    labs_commands = labs.add_subparsers(dest="labs_command", metavar="ACTION", required=True)
    copy = labs_commands.add_parser("copy", help="copy the labs to DEST (never overwrites)")
    copy.add_argument("dest", help="directory to copy the labs into (made if missing)")
    copy.add_argument("--source", default=None,
                      help="directory of released labs (default: labs/ of this checkout)")
    copy.set_defaults(func=_labs_copy)

    kernel = commands.add_parser(
        "kernel", help="the rnnlab-cuda Jupyter kernel (same notebooks, on the GPU)",
        description="rnnlab-cuda is this Python with RNNLAB_DEVICE=cuda: pick it in JupyterLab, "
                    "or `pytest --nbval --nbval-kernel-name rnnlab-cuda`, to run a notebook on "
                    "the GPU unchanged.")
    kernel_commands = kernel.add_subparsers(dest="kernel_command", metavar="ACTION",
                                            required=True)
    install = kernel_commands.add_parser("install", help="install the rnnlab-cuda kernelspec")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user only")
    where.add_argument("--sys-prefix", action="store_true",
                       help="into this Python environment (e.g. the course's venv)")
    where.add_argument("--prefix", metavar="PATH", help="into PATH/share/jupyter/kernels")
    install.set_defaults(func=_kernel_install)
    listing = kernel_commands.add_parser("list", help="show the kernels Jupyter finds")
    listing.set_defaults(func=_kernel_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
