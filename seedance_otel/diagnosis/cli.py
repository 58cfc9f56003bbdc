"""``seedance-otel diagnose FILE [--json]``: findings from a JSONL file of snapshots.

Exit status, so that CI jobs and cron checks can act on it:

* ``0``: nothing of severity ``warning`` or above;
* ``1``: at least one finding of severity ``warning`` or ``error``;
* ``2``: the input could not be used (missing or unreadable file, or not a
  single snapshot in a non-empty file) or the command line was wrong
  (argparse's own convention).

``register(subparsers)`` adds the subcommand to the main ``seedance-otel``
parser; :func:`run` is its handler.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from ._engine import diagnose
from ._finding import Severity
from ._jsonl import JsonlSnapshots, read_snapshots
from ._render import render_findings

__all__ = ["EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "register", "run"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``diagnose`` to an ``add_subparsers()`` object, with ``func`` set to :func:`run`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "diagnose",
        help="explain the connection faults in a JSONL file of snapshots",
        description=(
            "Read snapshots (one JSON object per line, as the jsonl exporter writes them, "
            'or nested under "snapshot") and print what is wrong and how to fix it. '
            "Exit status: 0 nothing to fix, 1 a warning or error was found, 2 unusable input."
        ),
    )
    parser.add_argument("file", metavar="FILE", help='JSONL file of snapshots ("-" for stdin)')
    parser.add_argument("--json", action="store_true", help="print findings as JSON")
    parser.set_defaults(func=run)
    return parser


def _read(path: str, stdin: TextIO) -> JsonlSnapshots:
    if path == "-":
        return read_snapshots(stdin)
    with open(path, encoding="utf-8", errors="replace") as handle:
        return read_snapshots(handle)


def run(
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Diagnose ``args.file``; print the report; return the exit status."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        source = _read(args.file, stdin if stdin is not None else sys.stdin)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"seedance-otel diagnose: cannot read {args.file}: {reason}", file=err)
        return EXIT_USAGE
    if source.lines and not source.snapshots:
        print(
            f"seedance-otel diagnose: {args.file}: none of its {source.lines} lines is a "
            f"snapshot (line {source.malformed[0].line}: {source.malformed[0].reason})",
            file=err,
        )
        return EXIT_USAGE
    # The file is another process's evidence: this process's own peer records
    # must not mix in.
    findings = diagnose(source.snapshots, peer_stats={})
    status = EXIT_FINDINGS if any(f.severity >= Severity.WARNING for f in findings) else EXIT_OK
    if getattr(args, "json", False):
        document = {
            "source": args.file,
            "snapshots": len(source.snapshots),
            "malformed_lines": [{"line": m.line, "reason": m.reason} for m in source.malformed],
            "findings": [f.to_dict() for f in findings],
            "exit_status": status,
        }
        json.dump(document, out, indent=2)
        out.write("\n")
    else:
        out.write(
            render_findings(
                findings,
                source=args.file,
                snapshots=len(source.snapshots),
                malformed=source.malformed,
            )
        )
    return status
