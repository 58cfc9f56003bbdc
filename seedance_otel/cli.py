"""The ``seedance-otel`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seedance-otel",
        description=(
            "Connection-fault snapshots for aiohttp, httpx and asyncio: see why a "
            "connection was reset, a name timed out or ALPN did not match."
        ),
    )
    parser.add_argument("--version", action="version", version=f"seedance-otel {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
