"""What every benchmark in ``bench/`` shares: its command line and the JSON it saves.

A benchmark builds its parser with :func:`parser` (so ``--json PATH`` and ``--threads N`` mean
the same everywhere), measures its variants side by side in one run, prints the ratios and, when
``--json`` is given, calls :func:`save` with its results. The saved file records what produced
it — the command, the ISO date, the machine and the torch version — so that a page that reads it
(the book's "Performance" appendix) can say where its figures come from::

    {"bench": "bench_models", "command": "python bench/bench_models.py --json ...",
     "date": "2026-11-30T04:12:00+00:00", "machine": {...}, "torch": "2.13.0+cpu",
     "threads": 2, "results": {...}}
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

__all__ = ["parser", "apply_threads", "machine", "save", "progress"]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` described by the first line of ``doc``, with the shared options.

    ``--json PATH`` (save the results there) and ``--threads N`` (torch's intra-op threads;
    torch's default when omitted) are added here; each benchmark adds its own sizes.
    """
    description = (doc or "").strip().splitlines()[0] if doc else None
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--json", metavar="PATH", type=Path, default=None,
                        help="also save the results, with the command, date, machine and "
                             "torch version, as JSON at PATH")
    result.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    return result


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads when ``threads`` is given; return the number in use."""
    if threads is not None:
        if threads < 1:
            raise SystemExit(f"--threads: expected an int >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def machine() -> dict[str, object]:
    """The machine a measurement ran on, in the words a reader needs to compare runs."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.system(),
            "python": platform.python_version(), "load_1min": load}


def save(path: Path | None, bench: str, results: dict) -> Path | None:
    """Write ``results`` with their provenance to ``path`` (nothing when ``path`` is None)."""
    if path is None:
        return None
    record = {
        "bench": bench,
        "command": " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "results": results,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"saved {path}")
    return path


def progress(iterable=None, *, total: int | None = None, desc: str = ""):
    """A ``tqdm`` bar on stderr for long runs (stdout keeps the printed table clean; no bar
    when stderr is not a terminal, so logs stay readable)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False, disable=None)
