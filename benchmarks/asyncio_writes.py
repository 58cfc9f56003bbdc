"""Instructions added per write on a plain asyncio connection, counted by valgrind.

The plain-asyncio hooks wrap ``transport.write`` of each watched connection;
a write that starts an exchange (nothing outstanding) also notes its idle
time and the current span. This counts what that adds, in the main thread
only (``--separate-threads``: the exporter's threads do not count), for two
workloads over one ``asyncio.open_connection`` to the benchmark server:

* ``exchange``   - one write, then read the answer (every write starts an exchange);
* ``pipelined``  - the request in four writes, then the answer (one write in
  four starts an exchange).

Each runs twice (N and 2N exchanges) raw and instrumented, so start-up cost
cancels; the added instructions per write are converted to microseconds with
the raw workload's own user CPU time per instruction, measured natively in the
same run. The budget is 1 us per write on top of what the hooks cost before
exchanges were tracked; run this on both versions to compare.

Usage: python -m benchmarks.asyncio_writes [--exchanges 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from urllib.parse import urlsplit

from benchmarks._callgrind import main_thread_instructions
from benchmarks.overhead import bench_server

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
WORKLOADS = {"exchange": 1, "pipelined": 4}
"""Workload name -> writes per exchange."""

CHILD = """
import gc, os, sys
gc.disable()  # a collection landing in one run and not the other would swamp the difference
sys.path.insert(0, {root!r})
os.environ["SEEDANCE_OTEL_EXPORTER"] = "none"
from benchmarks import asyncio_writes
name, mode, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "instrumented":
    import seedance_otel
    seedance_otel.instrument(exporter="none")
asyncio_writes.run(port, n, asyncio_writes.WORKLOADS[name])
"""


def _pieces(writes: int) -> list[bytes]:
    step = -(-len(REQUEST) // writes)
    return [REQUEST[i : i + step] for i in range(0, len(REQUEST), step)]


async def _exchanges(port: int, n: int, writes: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pieces = _pieces(writes)
    try:
        for _ in range(n):
            for piece in pieces:
                writer.write(piece)
            await reader.readuntil(b"ok")
    finally:
        writer.close()
        await writer.wait_closed()


def run(port: int, n: int, writes: int) -> None:
    asyncio.run(_exchanges(port, n, writes))


def count(name: str, mode: str, port: int, n: int) -> int:
    """Instructions of the main thread for ``n`` exchanges (plus start-up)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return main_thread_instructions(CHILD.format(root=root), name, mode, str(port), str(n))


def _user_cpu_s() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def native_us_per_exchange(port: int, n: int, writes: int) -> float:
    """User CPU per exchange, natively: valgrind counts user-space instructions
    only, so the kernel's share of each send and receive stays out."""
    best = float("inf")
    for _ in range(3):
        cpu = _user_cpu_s()
        run(port, n, writes)
        best = min(best, _user_cpu_s() - cpu)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs per mode")
    args = parser.parse_args()
    n = args.exchanges
    print(
        f"instructions per write (valgrind callgrind, main thread), {n} vs {2 * n} exchanges, "
        f"median of {args.repeats} alternating repeats"
    )
    print(
        f"{'workload':<10} {'writes':>6} {'raw Ir/ex':>10} {'instr Ir/ex':>11} "
        f"{'added Ir/write (min..max)':>28} {'~added us/write':>16} {'ratio':>6}"
    )
    with bench_server() as url:
        port = urlsplit(url).port
        assert port is not None
        for name, writes in WORKLOADS.items():
            per: dict[str, list[float]] = {"raw": [], "instrumented": []}
            for repeat in range(args.repeats):
                modes = ("raw", "instrumented") if repeat % 2 == 0 else ("instrumented", "raw")
                for mode in modes:
                    small = count(name, mode, port, n)
                    large = count(name, mode, port, 2 * n)
                    per[mode].append((large - small) / n)
            raw = statistics.median(per["raw"])
            ins = statistics.median(per["instrumented"])
            added = [
                (i - r) / writes for i, r in zip(per["instrumented"], per["raw"], strict=True)
            ]
            us_per_ir = native_us_per_exchange(port, n, writes) / raw
            spread = f"{min(added):+.0f}..{max(added):+.0f}"
            per_write = (ins - raw) / writes
            print(
                f"{name:<10} {writes:>6} {raw:10.0f} {ins:11.0f} {per_write:+11.0f} "
                f"({spread:>14}) {per_write * us_per_ir:+16.3f} {ins / raw:6.3f}",
                flush=True,
            )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f} s)")
