"""``seedance-otel diagnose FILE [--json]``: findings from a JSONL file of snapshots.

Exit status, so that CI jobs and cron checks can act on it:

* ``0``: nothing of severity ``warning`` or above;
* ``1``: at least one finding of severity ``warning`` or ``error``;
* ``2``: the input could not be used (missing or unreadable file, or not a
  single snapshot in it, empty files included) or the command line was wrong
  (argparse's own convention).

Text from the file (names, error messages) is the file's author's, not
ours: control characters in it, such as ANSI escape sequences, are printed
escaped (``\\x1b``), never sent raw to the terminal. On a terminal, long runs
show their progress on standard error.

``register(subparsers)`` adds the subcommand to the main ``seedance-otel``
parser; :func:`run` is its handler.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from ._engine import diagnose
from ._finding import Severity
from ._jsonl import JsonlSnapshots, LineProgress, read_snapshots
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


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Control characters (ANSI escapes, carriage returns, ...) as visible ``\\xNN``;
    newlines stay (the report's own line breaks)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _Progress:
    """One status line on a terminal's standard error, rewritten at most twice a second.

    Silent when standard error is not a terminal (a CI log, a pipe): there a
    status line would only be noise.
    """

    INTERVAL_S = 0.5

    def __init__(self, stream: TextIO, source: str) -> None:
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self._stream = stream
        self._source = source
        self._last = 0.0
        self._shown = False

    def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < self.INTERVAL_S):
            return
        self._last = now
        self._stream.write(f"\r\x1b[Kseedance-otel diagnose: {escape_controls(text)}")
        self._stream.flush()
        self._shown = True

    def lines(self, count: int) -> None:
        self.show(f"{self._source}: {count:,} lines read")

    def step(self, name: str) -> None:
        self.show(f"{self._source}: {name}")

    def done(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def _write_json(document: dict[str, Any], out: TextIO) -> None:
    """Top-level keys and each list item on a line of their own, the items compact.

    Readable, ``grep``-able per finding, and written by json's C encoder
    (``indent`` would switch to its pure-Python one: minutes for a fleet's
    worth of findings). A list may be given as an iterator: its items are
    then made one at a time as they are written.
    """
    out.write("{\n")
    for number, (key, value) in enumerate(document.items()):
        out.write(f"  {json.dumps(key)}: ")
        if isinstance(value, (list, Iterator)):
            opened = False
            for item in value:
                out.write(",\n    " if opened else "[\n    ")
                out.write(json.dumps(item))
                opened = True
            out.write("\n  ]" if opened else "[]")
        else:
            out.write(json.dumps(value))
        out.write(",\n" if number < len(document) - 1 else "\n")
    out.write("}\n")


def _read(path: str, stdin: TextIO, progress: LineProgress) -> JsonlSnapshots:
    if path == "-":
        return read_snapshots(stdin, progress)
    with open(path, encoding="utf-8", errors="replace") as handle:
        return read_snapshots(handle, progress)


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
    name = escape_controls(args.file)
    progress = _Progress(err, name)
    try:
        source = _read(args.file, stdin if stdin is not None else sys.stdin, progress.lines)
    except OSError as exc:
        progress.done()
        reason = exc.strerror or str(exc)
        print(f"seedance-otel diagnose: cannot read {name}: {reason}", file=err)
        return EXIT_USAGE
    if not source.snapshots:
        progress.done()
        if source.lines:
            first = source.malformed[0]
            why = f"none of its {source.lines} lines is a snapshot (line {first.line}: "
            why += f"{escape_controls(first.reason)})"
        else:
            why = "no snapshot in it (it is empty)"
        print(f"seedance-otel diagnose: {name}: {why}", file=err)
        return EXIT_USAGE
    # The file is another process's evidence: this process's own peer records
    # must not mix in.
    progress.show(f"{name}: diagnosing {len(source.snapshots):,} snapshots", force=True)
    findings = diagnose(source.snapshots, progress=progress.step)
    progress.done()
    status = EXIT_FINDINGS if any(f.severity >= Severity.WARNING for f in findings) else EXIT_OK
    if getattr(args, "json", False):
        document = {
            "source": args.file,
            "snapshots": len(source.snapshots),
            "malformed_lines": [{"line": m.line, "reason": m.reason} for m in source.malformed],
            "findings": (f.to_dict() for f in findings),
            "exit_status": status,
        }
        _write_json(document, out)
    else:
        report = render_findings(
            findings,
            source=args.file,
            snapshots=len(source.snapshots),
            malformed=source.malformed,
        )
        out.write(escape_controls(report))
    return status
