"""Instructions added per faulting request in a fault storm, counted by valgrind.

``benchmarks.storms`` times storms on the wall clock, where a single run on a
shared machine wanders by tens of microseconds per fault, more than the 25 us
budget. This counts the application's main-thread instructions instead (the
fault server runs natively in another process), for a fixed number of faults
and for twice as many, so that start-up cancels out, and converts the added
instructions to microseconds with the raw storm's own CPU time per
instruction, measured natively in the same run.

Under valgrind a storm runs some fifty times slower, so the collapsing window
(10 full snapshots per key per second) would admit far more full snapshots
than at native speed. Two instrumented modes therefore bound the mix:

* ``collapsed``: the steady state of a storm, every fault past the first
  counted into its key (the window is made endless);
* ``full``: collapsing off, every fault a full snapshot (classify, build,
  ring, metrics, span event).

The metrics go to an SDK ``MeterProvider`` (as under
``opentelemetry-instrument``), or with ``--metrics api`` to the API's no-op
meter (no provider set): the difference between the two runs is what the
SDK's own records cost per fault (for a counted fault, the one record of
the closed connection's duration; a full one also records a reused
connection's idle time).

At native speed a storm of F faults/s has 10 full snapshots a second per key,
so the added cost per fault is ``collapsed + 10 / F * (full - collapsed)``;
the last column gives it for the faults/s measured natively.

The garbage collector is disabled in the measured process: a collection that
lands in one of the two runs and not the other would swamp the difference.

Usage: python -m benchmarks.storm_instructions [--faults 200] [--only "httpx new"]
[--metrics api]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from benchmarks import storms
from benchmarks._callgrind import main_thread_instructions

MODES = ("raw", "collapsed", "full")

CHILD = """
import asyncio, gc, os, sys
gc.disable()  # a collection landing in one run and not the other would swamp the difference
sys.path.insert(0, {root!r})
library, storm, mode, url, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
sdk_metrics = sys.argv[6] == "sdk"
from benchmarks import storms
run = storms._client(library, storm, limit=n)
if mode != "raw" and sdk_metrics:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
if mode != "raw":
    os.environ["SEEDANCE_OTEL_COLLAPSE_PER_S"] = "1" if mode == "collapsed" else "0"
    import seedance_otel
    from seedance_otel import _collapse
    _collapse.WINDOW_NS = 1 << 62  # one endless window: every fault past the first is counted
    seedance_otel.instrument(exporter="none")
faults = asyncio.run(run(url))
assert faults == n, (faults, n)
"""


def count(library: str, storm: str, mode: str, url: str, n: int, metrics: str) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = CHILD.format(root=root)
    return main_thread_instructions(code, library, storm, mode, url, str(n), metrics)


def native(library: str, storm: str, url: str, n: int) -> tuple[float, float]:
    """The raw storm natively: (CPU us per fault, faults per second)."""
    best_cpu, best_rate = float("inf"), 0.0
    for _ in range(3):
        storms.STOP.clear()
        run = storms._client(library, storm, limit=n)
        cpu, wall = time.thread_time(), time.perf_counter()
        faults = asyncio.run(run(url))
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        best_cpu = min(best_cpu, cpu / faults * 1e6)
        best_rate = max(best_rate, faults / wall)
    return best_cpu, best_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs per mode")
    parser.add_argument("--only", default="", help="substring of 'library storm' to run")
    parser.add_argument(
        "--metrics",
        choices=("sdk", "api"),
        default="sdk",
        help="an SDK MeterProvider (default), or the API's no-op meter",
    )
    args = parser.parse_args()
    n = args.faults
    print(
        f"instructions per faulting request (valgrind callgrind, main thread), {n} vs "
        f"{2 * n} faults, median of {args.repeats}, {args.metrics} metrics; budget +25 us/fault"
    )
    print(
        f"{'storm':<24}{'raw Ir':>10}{'+collapsed Ir':>14}{'+full Ir':>10}"
        f"{'raw us':>8}{'faults/s':>9}{'+us collapsed':>14}{'+us full':>9}{'+us storm':>10}"
    )
    for library, storm, name in storms.selected(args.only):
        with storms.storm_server(storm) as url:
            per: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(args.repeats):
                for mode in MODES:
                    small = count(library, storm, mode, url, n, args.metrics)
                    large = count(library, storm, mode, url, 2 * n, args.metrics)
                    per[mode].append((large - small) / n)
            raw_us, rate = native(library, storm, url, 2000)
        raw, collapsed, full = (statistics.median(per[mode]) for mode in MODES)
        us_per_ir = raw_us / raw
        add_c, add_f = (collapsed - raw) * us_per_ir, (full - raw) * us_per_ir
        mixed = add_c + min(1.0, 10 / rate) * (add_f - add_c)
        print(
            f"{name:<24}{raw:>10.0f}{collapsed - raw:>+14.0f}{full - raw:>+10.0f}"
            f"{raw_us:>8.1f}{rate:>9.0f}{add_c:>+14.1f}{add_f:>+9.1f}{mixed:>+10.1f}",
            flush=True,
        )


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f} s)")
