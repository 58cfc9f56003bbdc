"""Fault storms: what a storm costs the application, with and without us, in the same run.

Three storms, each for every client library installed (aiohttp, httpx, and
httpx2 when present):

* ``new-conn-rst``: every request opens a connection that is reset;
* ``reused-rst``: every second request meets a reset on a reused connection;
* ``refused``: every request's connect is refused (a closed port).

Each storm runs for the same time in a fresh process, uninstrumented
(``raw``), instrumented with the collector down (OTLP to a closed port) and
up (``seedance-otel receive`` on loopback), in alternating order for a few
rounds; each figure is the median over the rounds. Instrumented runs keep
the defaults (collapsing on, metrics on: through the OTel API, with no SDK
``MeterProvider``). Reported per storm and
mode:

* added CPU per faulting request, in us: the main thread's CPU time
  (``time.thread_time``: the application's thread, not the shipper's) per
  fault, minus the same round's raw run's (budget <= 25 us);
* event-loop lag p50/p99 (a task sleeping 1 ms measures how late it wakes;
  budget: p99 within +1 ms of raw);
* faults, captured, collapsed and shipped per second; the process's RSS.

Wall-clock numbers on a shared machine wander; compare the columns of one run.

A single run wanders by tens of microseconds per fault on a shared machine;
``benchmarks.storm_paired`` measures the added CPU with raw and instrumented
rounds alternating in one process, and ``benchmarks.storm_instructions``
counts instructions.

Usage: python -m benchmarks.storms [--seconds 3] [--rounds 3] [--quick] [--only httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORMS = ("new-conn-rst", "reused-rst", "refused")
MODES = ("raw", "collector-down", "collector-up")
LIBRARIES = ("aiohttp", "httpx", "httpx2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _process(args: list[str], ready: Callable[[subprocess.Popen[str]], str]) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield ready(proc)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def fault_server(mode: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")

        def read_port() -> str:
            with contextlib.suppress(FileNotFoundError), open(port_file) as f:
                return f.read()
            return ""

        def ready(proc: subprocess.Popen[str]) -> str:
            deadline = time.monotonic() + 10
            while not read_port():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("fault server did not start")
                time.sleep(0.05)
            return f"http://127.0.0.1:{read_port()}/"

        with _process(["-m", "benchmarks._fault_server", mode, port_file], ready) as url:
            yield url


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    port = _free_port()

    def ready(proc: subprocess.Popen[str]) -> str:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "listening" not in line:
            raise RuntimeError(f"receiver did not start: {line}")
        return f"http://127.0.0.1:{port}"

    args = ["-m", "seedance_otel", "receive", "--quiet", "--grpc-port", str(port)]
    with _process([*args, "--http-port", "-1"], ready) as endpoint:
        yield endpoint


# -- the child: one storm, one mode ---------------------------------------------------


def _client(
    library: str, storm: str, limit: int | None = None
) -> Callable[[str], Coroutine[Any, Any, int]]:
    """An async function making requests until told to stop (or ``limit`` faults);
    returns the faults seen."""
    limit = sys.maxsize if limit is None else limit
    if library == "aiohttp":
        import aiohttp

        async def run_aiohttp(url: str) -> int:
            faults = 0
            connector = aiohttp.TCPConnector(force_close=storm != "reused-rst")
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                while faults < limit and not STOP.is_set():
                    try:
                        # POST: aiohttp retries a GET on a reused connection by itself.
                        async with session.post(url, data=b"x") as response:
                            await response.read()
                    except aiohttp.ClientError:
                        faults += 1
            return faults

        return run_aiohttp
    module = importlib.import_module(library)

    async def run_httpx(url: str) -> int:
        faults = 0
        keepalive = None if storm == "reused-rst" else 0
        limits = module.Limits(max_keepalive_connections=keepalive)
        async with module.AsyncClient(limits=limits, timeout=5) as client:
            while faults < limit and not STOP.is_set():
                try:
                    await client.post(url, content=b"x")
                except module.TransportError:
                    faults += 1
        return faults

    return run_httpx


STOP = asyncio.Event()


async def _lag_probe(samples: list[float]) -> None:
    while not STOP.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        samples.append(max(0.0, time.perf_counter() - start - 0.001))


async def _storm(library: str, storm: str, url: str, seconds: float) -> dict[str, Any]:
    lags: list[float] = []
    probe = asyncio.create_task(_lag_probe(lags))
    client = asyncio.create_task(_client(library, storm)(url))
    cpu, wall = time.thread_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    STOP.set()
    faults = await client
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    await probe
    lags.sort()
    return {
        "faults": faults,
        "cpu_s": cpu,
        "wall_s": wall,
        "lag_p50_ms": statistics.median(lags) * 1000 if lags else 0.0,
        "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1000 if lags else 0.0,
    }


def child(library: str, storm: str, mode: str, url: str, seconds: float) -> None:
    import seedance_otel

    if mode != "raw":
        seedance_otel.instrument(exporter="otlp")  # metrics on, as by default
    result = asyncio.run(_storm(library, storm, url, seconds))
    if mode != "raw":
        seedance_otel.flush(5)
        result["stats"] = seedance_otel.stats()
    result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# -- the parent ------------------------------------------------------------------------


def _run_child(
    library: str, storm: str, mode: str, url: str, seconds: float, endpoint: str
) -> dict[str, Any]:
    env = dict(
        os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc"
    )
    env.pop("SEEDANCE_OTEL_COLLAPSE_PER_S", None)  # the default is what users get
    args = ["-m", "benchmarks.storms", "--child", library, storm, mode, url, str(seconds)]
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds * 10 + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{library} {storm} {mode} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _closed_port_url() -> str:
    return f"http://127.0.0.1:{_free_port()}/"


def storm_server(storm: str) -> contextlib.AbstractContextManager[str]:
    """The URL a storm's requests go to: a closed port, or a fault server."""
    if storm == "refused":
        return contextlib.nullcontext(_closed_port_url())
    return fault_server("rst" if storm == "new-conn-rst" else "reuse-rst")


def selected(only: str) -> Iterator[tuple[str, str, str]]:
    """(library, storm, "library storm") of each installed library's storms
    whose name contains ``only``."""
    for library in LIBRARIES:
        if importlib.util.find_spec(library) is None:
            continue
        for storm in STORMS:
            name = f"{library} {storm}"
            if only in name:
                yield library, storm, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="1 s per storm, one round (smoke)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode, alternating")
    parser.add_argument("--only", default="", help="substring of 'library storm' to run")
    parser.add_argument("--child", nargs=5, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        library, storm, mode, url, seconds = args.child
        child(library, storm, mode, url, float(seconds))
        return
    seconds = 1.0 if args.quick else args.seconds
    if args.quick:
        args.rounds = 1
    print(
        f"fault storms, {seconds:g} s each, median of {args.rounds} alternating rounds; "
        "CPU is the main thread's; budget +25 us/fault"
    )
    header = (
        f"{'storm':<24}{'mode':<16}{'faults/s':>9}{'+us/fault':>10}{'lag p50':>9}"
        f"{'lag p99':>9}{'captured/s':>11}{'collapsed/s':>12}{'shipped/s':>10}{'RSS MiB':>9}"
    )
    print(header)
    with receiver() as up_endpoint:
        down_endpoint = f"http://127.0.0.1:{_free_port()}"
        for library, storm, name in selected(args.only):
            with storm_server(storm) as url:
                runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
                for round_ in range(args.rounds):
                    # Alternate the order, so a trend on the machine hits every mode.
                    for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                        endpoint = up_endpoint if mode == "collector-up" else down_endpoint
                        result = _run_child(library, storm, mode, url, seconds, endpoint)
                        runs[mode].append(result)
                for mode in MODES:
                    print(_row(name, mode, runs[mode], runs["raw"]))


def _per_fault_us(result: dict[str, Any]) -> float:
    return float(result["cpu_s"]) / max(1, int(result["faults"])) * 1e6


def _row(name: str, mode: str, results: list[dict[str, Any]], raws: list[dict[str, Any]]) -> str:
    """Medians over the rounds; the added CPU is the median of each round's
    difference from that round's raw run."""
    pairs = zip(results, raws, strict=True)
    added = statistics.median(_per_fault_us(result) - _per_fault_us(raw) for result, raw in pairs)

    def median(read: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(read(result) for result in results)

    def per_s(counter: str) -> float:
        return median(lambda r: float(r.get("stats", {}).get(counter, 0)) / r["wall_s"])

    return (
        f"{name:<24}{mode:<16}{median(lambda r: r['faults'] / r['wall_s']):>9.0f}"
        f"{(added if mode != 'raw' else 0.0):>+10.1f}"
        f"{median(lambda r: r['lag_p50_ms']):>8.2f}m{median(lambda r: r['lag_p99_ms']):>8.2f}m"
        f"{per_s('captured'):>11.0f}{per_s('collapsed'):>12.0f}{per_s('exported'):>10.0f}"
        f"{median(lambda r: r['rss_mib']):>9.1f}"
    )


if __name__ == "__main__":
    main()
