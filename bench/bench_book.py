"""How long the book takes to verify: nbval on every chapter and solution notebook, one by one.

Each notebook is run by ``pytest --nbval`` in its own process (as tests/test_notebooks.py does),
one after another, and timed: wall seconds and CPU seconds (user + system of the process and its
kernel). The budget of a page is 60 s of wall time on 2 cores; the CPU time says how much of a
loaded machine's wall time was the page's own work.

Run: ``python bench/bench_book.py [--json chapters/data/perf/book.json] [--only 05_clipping]``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import benchlib

ROOT = Path(__file__).resolve().parents[1]


def notebooks(only: list[str] | None) -> list[Path]:
    found = sorted(p for folder in ("chapters", "solutions")
                   for p in (ROOT / folder).glob("*.ipynb"))
    if only:
        found = [p for p in found if any(name in p.stem for name in only)]
    return found


def run_nbval(path: Path) -> dict[str, object]:
    """Run nbval on one notebook in a child process; its wall and CPU seconds and outcome."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(ROOT), str(path.relative_to(ROOT))],
        cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"notebook": path.relative_to(ROOT).as_posix(), "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "passed": result.returncode == 0}


def main() -> None:
    parser = benchlib.parser(__doc__)
    parser.add_argument("--only", nargs="*", help="notebooks whose name contains one of these")
    args = parser.parse_args()
    paths = notebooks(args.only)
    if not paths:
        raise SystemExit("no notebook matched")
    rows = []
    for path in benchlib.progress(paths, desc="nbval"):
        rows.append(run_nbval(path))
        row = rows[-1]
        print(f"{row['notebook']:45} wall {row['wall_s']:6.1f} s  cpu {row['cpu_s']:6.1f} s  "
              f"{'passed' if row['passed'] else 'FAILED'}", flush=True)
    total_wall = sum(r["wall_s"] for r in rows)
    total_cpu = sum(r["cpu_s"] for r in rows)
    print(f"{'total':45} wall {total_wall:6.1f} s  cpu {total_cpu:6.1f} s  "
          f"({sum(r['passed'] for r in rows)}/{len(rows)} passed)")
    benchlib.save(args.json, "bench_book", {"notebooks": rows,
                                            "total_wall_s": round(total_wall, 2),
                                            "total_cpu_s": round(total_cpu, 2)})


if __name__ == "__main__":
    main()
