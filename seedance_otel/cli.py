"""The ``seedance-otel`` command: one subcommand per module, each with its own ``register``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .dashboards import cli as dashboards_cli
    from .demo import cli as demo_cli
    from .diagnosis import cli as diagnosis_cli
    from .receiver import cli as receiver_cli

    parser = argparse.ArgumentParser(
        prog="seedance-otel",
        description=(
            "Connection-fault snapshots for aiohttp, httpx and asyncio: see why a "
            "connection was reset, a name timed out or ALPN did not match."
        ),
    )
    parser.add_argument("--version", action="version", version=f"seedance-otel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo_cli, receiver_cli, diagnosis_cli, dashboards_cli):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    result: int = func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
