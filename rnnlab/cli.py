"""The ``rnnlab`` command line: instructor tooling.

``rnnlab release SOURCE DEST`` turns solution notebooks into student labs and
``rnnlab grade SUBMISSIONS --source SOURCE --out grades.csv`` grades a folder of submissions.
"""

from __future__ import annotations

import argparse
import sys

from rnnlab import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnlab",
        description="Instructor tooling of the rnnlab course: release labs, grade submissions.",
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
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
