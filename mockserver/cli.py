"""The `wanmock` console script (also `python -m wanmock.mockserver`).

Commands come from the ``wanmock.commands`` entry-point group: each package registers an
``add_parser(subparsers)`` function in pyproject.toml, so this module assembles the command line
without importing the packages above it. A handler takes the parsed arguments and the output
streams and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wanmock",
        description="Mock servers and contract tests for the Wan 2.7 video-generation APIs "
        "(Modellix, AI/ML API, APIYI, DashScope).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in sorted(entry_points(group="wanmock.commands"), key=lambda e: e.name):
        try:
            add_parser = entry.load()
        except ImportError as exc:  # one broken command must not take the others down
            sys.stderr.write(f"wanmock: the {entry.name!r} command is unavailable: {exc}\n")
            continue
        add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args, sys.stdout, sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
