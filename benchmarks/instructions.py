"""Instructions added per request, counted by valgrind: immune to a noisy machine.

Timing on a shared 2-core machine wanders by several microseconds between
runs, which is more than the 3 us budget. Instruction counts do not: this runs
each workload under ``valgrind --tool=callgrind`` (the server runs natively in
another process), twice with different request counts, so that start-up cost
cancels out, and reports instructions per request raw and instrumented. The
added instructions are converted to microseconds with the raw workload's own
CPU time per instruction, measured natively in the same run.

The garbage collector is disabled in the measured process: a collection that
lands in one of the two runs and not the other would swamp the difference.

The sequential workloads (the default) cover aiohttp, httpx async and sync,
and httpx2 async and sync (the OpenAI / Anthropic / Google GenAI SDKs' client,
hooked by the same httpcore code as httpx).

Usage: python -m benchmarks.instructions [--requests 400] [--only "httpx2"]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from benchmarks._callgrind import main_thread_instructions
from benchmarks.overhead import (
    WORKLOADS,
    bench_server,
)

CHILD = """
import gc, os, sys
gc.disable()  # a collection landing in one run and not the other would swamp the difference
sys.path.insert(0, {root!r})
os.environ["SEEDANCE_OTEL_EXPORTER"] = "none"
from benchmarks import overhead
name, mode, url, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
workload = {{w[0]: (w[1], w[2]) for w in overhead.WORKLOADS}}[name]
if mode == "instrumented":
    import seedance_otel
    seedance_otel.instrument(exporter="none")
fn, concurrency = workload
fn(url, n, concurrency)
"""


def count(name: str, mode: str, url: str, n: int) -> int:
    """Instructions of the workload's main thread for ``n`` requests (plus start-up)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return main_thread_instructions(CHILD.format(root=root), name, mode, url, str(n))


def native_us_per_request(name: str, url: str, n: int) -> float:
    fn, concurrency = {w[0]: (w[1], w[2]) for w in WORKLOADS}[name]
    fn(url, n, concurrency)
    best = min(fn(url, n, concurrency)[1] for _ in range(3))
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs per mode")
    parser.add_argument(
        "--only", default="sequential", help="substring of workload names (default: sequential)"
    )
    args = parser.parse_args()
    n = args.requests
    print(
        f"instructions per request (valgrind callgrind), {n} vs {2 * n} requests, "
        f"median of {args.repeats} alternating repeats"
    )
    print(
        f"{'workload':<24} {'raw Ir':>9} {'instr Ir':>9} {'added Ir (min..max)':>26} "
        f"{'~added us':>10}"
    )
    with bench_server() as url:
        for name, _fn, _c in WORKLOADS:
            if args.only not in name:
                continue
            per: dict[str, list[float]] = {"raw": [], "instrumented": []}
            for repeat in range(args.repeats):
                modes = ("raw", "instrumented") if repeat % 2 == 0 else ("instrumented", "raw")
                for mode in modes:
                    small = count(name, mode, url, n)
                    large = count(name, mode, url, 2 * n)
                    per[mode].append((large - small) / n)
            raw = statistics.median(per["raw"])
            ins = statistics.median(per["instrumented"])
            diffs = [i - r for i, r in zip(per["instrumented"], per["raw"], strict=True)]
            us = native_us_per_request(name, url, 2000)
            spread = f"{min(diffs):+.0f}..{max(diffs):+.0f}"
            print(
                f"{name:<24} {raw:9.0f} {ins:9.0f} {ins - raw:+9.0f} ({spread:>14}) "
                f"{(ins - raw) * us / raw:+10.2f}",
                flush=True,
            )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f} s)")
