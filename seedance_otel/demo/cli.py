"""``seedance-otel demo``."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="walk real clients into the three traps on loopback and diagnose them",
        description=(
            "Start a middlebox that forgets idle connections, a TLS server that requires "
            "HTTP/2 and a name server that never answers, all on loopback; run aiohttp "
            "and httpx clients into them; ship the snapshots over OTLP (to an embedded "
            "receiver, or OTEL_EXPORTER_OTLP_ENDPOINT when set); print each as it "
            "arrives, then the diagnosis. Exits 0 only if all three traps were found."
        ),
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ._run import run_demo

    return run_demo()
