"""``seedance-otel receive``: run the local OTLP sink until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from ..exporting.sinks import format_line

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "receive",
        help="a local OTLP sink that prints connection-fault events (not a collector)",
        description=(
            "Listen for OTLP on loopback (gRPC, and HTTP with protobuf or JSON bodies), "
            "print one line per "
            "seedance.connection.fault event and optionally append them as JSONL for "
            "`seedance-otel diagnose`. A developer tool, not a collector."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--grpc-port", type=int, default=4317, help="OTLP/gRPC port (4317; -1 off)"
    )
    parser.add_argument(
        "--http-port", type=int, default=4318, help="OTLP/HTTP port (4318; -1 off)"
    )
    parser.add_argument("--jsonl", metavar="FILE", help="append received snapshots to FILE")
    parser.add_argument("--quiet", action="store_true", help="do not print events")
    parser.add_argument(
        "--exit-after",
        type=int,
        metavar="N",
        help="exit once N snapshots have been received (for scripts)",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="exit after SECONDS in any case"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import ReceivedSnapshot, Receiver

    done = threading.Event()
    received = 0
    lock = threading.Lock()

    def on_snapshot(item: ReceivedSnapshot) -> None:
        nonlocal received
        if not args.quiet:
            print(format_line(item.snapshot, item.service_name), flush=True)
        with lock:
            received += 1
            if args.exit_after is not None and received >= args.exit_after:
                done.set()

    receiver = Receiver(
        args.host,
        None if args.grpc_port < 0 else args.grpc_port,
        None if args.http_port < 0 else args.http_port,
        on_snapshot=on_snapshot,
        jsonl_path=args.jsonl,
    )
    try:
        receiver.start()
    except OSError as exc:
        print(f"seedance-otel receive: {exc}", file=sys.stderr)
        return 2
    listening = []
    if receiver.grpc_port is not None:
        listening.append(f"OTLP/gRPC {receiver.grpc_endpoint}")
    if receiver.http_port is not None:
        listening.append(f"OTLP/HTTP {receiver.http_endpoint}")
    print(
        f"seedance-otel receive: listening on {', '.join(listening)}", file=sys.stderr, flush=True
    )
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait(args.timeout)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        receiver.stop()
    return 0
