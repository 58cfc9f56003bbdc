"""Happy-path overhead of seedance-otel per request, and the cost of one capture.

For each client (aiohttp sequential and x50 concurrent, httpx async sequential
and x50, httpx sync sequential) this runs alternating rounds of the same
workload with instrumentation off and on, in one process, against a cheap
keep-alive server in another process, and prints requests/s and client CPU
microseconds per request for both, the added microseconds (median of the
paired round differences, with the spread) and the ratio.

Budget (core issue): <= 3 us added per request, aiohttp and httpx sequential.
Then it times ``capture`` for a realistic reset (median and p99 of
single calls; budget p99 <= 20 us), each call followed by a control of
pure-Python work of about the same median, whose p99 is this machine's tail
for code of that length.

Usage: python -m benchmarks.overhead [--rounds 12] [--requests 2000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

os.environ.setdefault("SEEDANCE_OTEL_EXPORTER", "none")

import seedance_otel
from seedance_otel import instrumentor


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


@contextlib.contextmanager
def bench_server() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._server", port_file],
            stdin=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        try:
            deadline = time.monotonic() + 10
            while not _read(port_file):
                if time.monotonic() > deadline:
                    raise RuntimeError("benchmark server did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{_read(port_file)}/"
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- workloads: each runs n requests on one warm client and returns (wall_s, cpu_s)


def _measure(run: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def aiohttp_workload(url: str, n: int, concurrency: int) -> tuple[float, float]:
    import aiohttp

    async def main() -> tuple[float, float]:
        connector = aiohttp.TCPConnector(limit=max(100, concurrency))
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> None:
                async with session.get(url) as resp:
                    await resp.read()

            for _ in range(concurrency):  # warm the pool
                await one()
            wall, cpu = time.perf_counter(), time.process_time()
            if concurrency == 1:
                for _ in range(n):
                    await one()
            else:
                for _ in range(n // concurrency):
                    await asyncio.gather(*(one() for _ in range(concurrency)))
            return time.perf_counter() - wall, time.process_time() - cpu

    return asyncio.run(main())


def httpx_async_workload(
    url: str, n: int, concurrency: int, package: str = "httpx"
) -> tuple[float, float]:
    """httpx's AsyncClient, or httpx2's (the SDKs' client; the same API)."""
    httpx = importlib.import_module(package)

    async def main() -> tuple[float, float]:
        limits = httpx.Limits(max_connections=max(100, concurrency))
        async with httpx.AsyncClient(limits=limits) as client:
            for _ in range(concurrency):
                await client.get(url)
            wall, cpu = time.perf_counter(), time.process_time()
            if concurrency == 1:
                for _ in range(n):
                    await client.get(url)
            else:
                for _ in range(n // concurrency):
                    await asyncio.gather(*(client.get(url) for _ in range(concurrency)))
            return time.perf_counter() - wall, time.process_time() - cpu

    return asyncio.run(main())


def httpx_sync_workload(
    url: str, n: int, concurrency: int, package: str = "httpx"
) -> tuple[float, float]:
    httpx = importlib.import_module(package)
    with httpx.Client() as client:
        client.get(url)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            client.get(url)
        return time.perf_counter() - wall, time.process_time() - cpu


WORKLOADS: list[tuple[str, Callable[[str, int, int], tuple[float, float]], int]] = [
    ("aiohttp sequential", aiohttp_workload, 1),
    ("aiohttp x50", aiohttp_workload, 50),
    ("httpx async sequential", httpx_async_workload, 1),
    ("httpx async x50", httpx_async_workload, 50),
    ("httpx sync sequential", httpx_sync_workload, 1),
    ("httpx2 async sequential", functools.partial(httpx_async_workload, package="httpx2"), 1),
    ("httpx2 async x50", functools.partial(httpx_async_workload, package="httpx2"), 50),
    ("httpx2 sync sequential", functools.partial(httpx_sync_workload, package="httpx2"), 1),
]


def set_instrumented(on: bool) -> None:
    if on:
        seedance_otel.instrument(exporter="none")
    else:
        seedance_otel.uninstrument()


def compare(
    url: str,
    workload: Callable[[str, int, int], tuple[float, float]],
    concurrency: int,
    rounds: int,
    n: int,
) -> dict[str, Any]:
    raw_cpu: list[float] = []
    ins_cpu: list[float] = []
    raw_rps: list[float] = []
    ins_rps: list[float] = []
    workload(url, min(n, 500), concurrency)  # warm imports and caches
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for on in order:
            set_instrumented(on)
            wall, cpu = workload(url, n, concurrency)
            done = (n // concurrency) * concurrency
            (ins_cpu if on else raw_cpu).append(cpu / done * 1e6)
            (ins_rps if on else raw_rps).append(done / wall)
        set_instrumented(False)
    diffs = [i - r for i, r in zip(ins_cpu, raw_cpu, strict=True)]
    q = statistics.quantiles(diffs, n=4) if len(diffs) >= 4 else [min(diffs), 0, max(diffs)]
    return {
        "raw_us": statistics.median(raw_cpu),
        "ins_us": statistics.median(ins_cpu),
        "added_us": statistics.median(diffs),
        "added_q1": q[0],
        "added_q3": q[-1],
        "raw_rps": statistics.median(raw_rps),
        "ins_rps": statistics.median(ins_rps),
    }


class CaptureTimes(NamedTuple):
    """One capture's times (µs), and a control's timed between them."""

    median_us: float
    p99_us: float
    control_median_us: float
    """Pure-Python work sized to take about the capture's median: what this
    machine's scheduling and caches make of any code that long."""
    control_p99_us: float


def _control(rounds: int) -> None:
    """The control: a dict and a string per round, freed on return (no cycles,
    so it leaves the garbage collector nothing to do)."""
    made = []
    for i in range(rounds):
        made.append({"peer": i, "port": str(i)})


def _sized_control(target_us: float) -> int:
    """Rounds of :func:`_control` that take about ``target_us`` (median of 300 calls)."""
    rounds = 50
    times = []
    for _ in range(300):
        start = time.perf_counter_ns()
        _control(rounds)
        times.append((time.perf_counter_ns() - start) / 1000)
    return max(1, round(rounds * target_us / statistics.median(times)))


def capture_cost(samples: int, *, sdk_metrics: bool = False, **options: Any) -> CaptureTimes:
    """Median and p99 of one ``capture`` call for an httpx-style reset, in us.

    Collapsing is off unless ``options`` say otherwise: every call builds a
    full snapshot, which is what the budget is for. With it on (the default
    of ``instrument()``), all but the first ten calls a second are counted
    into their key, a storm's cheaper steady state.

    Each capture is followed by a call of a control of about the same median,
    timed the same way, so the two see the same phases of a shared machine:
    the control's p99 is the tail this machine gives code of that length, the
    baseline for the capture's.

    ``sdk_metrics``: the metrics go to an SDK ``MeterProvider`` (as under
    ``opentelemetry-instrument``), and a capture pays the SDK's own record of
    the reused connection's idle time (about 80,000 instructions); otherwise
    to the API's no-op meter."""
    import httpcore
    import httpx

    from seedance_otel._capture import FaultContext, capture
    from seedance_otel._classify import HookFacts
    from seedance_otel._connection import ConnectionHistory, PeerStats, SocketFacts
    from seedance_otel.instrumentation.httpx_client import LIBRARY

    seedance_otel.uninstrument()
    options.setdefault("exporter", "none")
    options.setdefault("collapse_per_s", 0)
    providers: dict[str, Any] = {}
    if sdk_metrics:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        providers["meter_provider"] = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentor.start({"ring_size": 4096, **options}, providers=providers)
    gc.collect()  # the HTTP workloads' garbage is not part of a capture's cost
    history = ConnectionHistory("httpx", "api.example.com", 443, PeerStats())
    history.socket = SocketFacts(("127.0.0.7", 443), ("127.0.0.1", 50123))
    history.requests_completed, history.idle_since = 3, time.monotonic() - 8.5
    history.begin_request(time.monotonic(), None)
    facts = HookFacts(phase="request")
    timings: list[float] = []
    control: list[float] = []
    rounds = 0
    for i in range(samples + 500):
        root = ConnectionResetError(104, "Connection reset by peer")
        inner = httpcore.ReadError("")
        inner.__cause__ = root
        exc = httpx.ReadError("")
        exc.__cause__ = inner
        start = time.perf_counter_ns()
        capture(FaultContext(library=LIBRARY, exc=exc, facts=facts, history=history))
        took = (time.perf_counter_ns() - start) / 1000
        if i < 500:  # the first 500 warm caches and size the control
            timings.append(took)
            if i == 499:
                rounds = _sized_control(statistics.median(timings))
                timings.clear()
            continue
        timings.append(took)
        start = time.perf_counter_ns()
        _control(rounds)
        control.append((time.perf_counter_ns() - start) / 1000)
    seedance_otel.uninstrument()
    if "meter_provider" in providers:
        providers["meter_provider"].shutdown()
    return CaptureTimes(*_median_p99(timings), *_median_p99(control))


def _median_p99(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="4 rounds of 500 (smoke run)")
    parser.add_argument("--only", help="substring of the workload names to run")
    args = parser.parse_args()
    rounds, n = (4, 500) if args.quick else (args.rounds, args.requests)
    print(
        f"seedance-otel {seedance_otel.__version__}, Python {sys.version.split()[0]}, "
        f"{rounds} alternating rounds x {n} requests, client CPU per request"
    )
    print(
        f"{'workload':<24} {'raw us':>8} {'instr us':>9} {'added us (IQR)':>22} "
        f"{'ratio':>6} {'raw req/s':>10} {'instr req/s':>11}"
    )
    with bench_server() as url:
        for name, workload, concurrency in WORKLOADS:
            if args.only and args.only not in name:
                continue
            res = compare(url, workload, concurrency, rounds, n)
            spread = f"[{res['added_q1']:+.2f}, {res['added_q3']:+.2f}]"
            print(
                f"{name:<24} {res['raw_us']:8.1f} {res['ins_us']:9.1f} "
                f"{res['added_us']:+8.2f} {spread:>13} {res['ins_us'] / res['raw_us']:6.3f} "
                f"{res['raw_rps']:10.0f} {res['ins_rps']:11.0f}",
                flush=True,
            )
    samples = 5000 if not args.quick else 1000
    full = capture_cost(samples)
    print(
        f"capture cost per snapshot: median {full.median_us:.1f} us, p99 {full.p99_us:.1f} us "
        f"(budget p99 <= 20 us); control of the same length, timed between them: "
        f"median {full.control_median_us:.1f} us, p99 {full.control_p99_us:.1f} us"
    )
    sdk = capture_cost(samples, sdk_metrics=True)
    print(
        f"the same with an SDK MeterProvider: median {sdk.median_us:.1f} us, "
        f"p99 {sdk.p99_us:.1f} us; control: median {sdk.control_median_us:.1f} us, "
        f"p99 {sdk.control_p99_us:.1f} us"
    )
    counted = capture_cost(samples, collapse_per_s=10)
    print(
        f"capture cost per fault counted into a storm's key: median {counted.median_us:.1f} us, "
        f"p99 {counted.p99_us:.1f} us; control: median {counted.control_median_us:.1f} us, "
        f"p99 {counted.control_p99_us:.1f} us"
    )


if __name__ == "__main__":
    main()
