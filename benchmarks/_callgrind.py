"""Instructions a Python snippet's main thread executes, counted by valgrind's callgrind.

Only the main thread: the shipper's and timer threads wake on a clock, so a
longer run (under valgrind, many seconds) gives them more wake-ups, which
would read as cost of the work measured. Hashing is fixed so dict layouts,
and with them instruction counts, repeat from run to run.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import tempfile

__all__ = ["main_thread_instructions"]

_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def main_thread_instructions(code: str, *args: str) -> int:
    """Run ``python -c code *args`` under callgrind; the main thread's total."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-c",
                code,
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        main_thread = sorted(glob.glob(out + "*-01"))
        if not main_thread:
            raise RuntimeError(f"callgrind wrote no per-thread totals:\n{proc.stderr[-2000:]}")
        with open(main_thread[0]) as f:
            match = _TOTALS.search(f.read())
    if match is None:
        raise RuntimeError(f"no totals in {main_thread[0]}")
    return int(match.group(1))
