"""Shipping: throughput to a receiver, capture cost while shipping, event-loop lag, ring memory.

Prints:

* sustained shipping throughput (snapshots/s) from the ring to a
  ``seedance-otel receive`` process over OTLP/gRPC and OTLP/HTTP on loopback
  (target >= 50,000/s);
* the cost of one capture while the shipper exports (p50/p99; budget p99 <= 20 us);
* event-loop lag p99 during a fault storm with the collector down, against the
  same loop and storm without instrumentation (budget: <= 1 ms more);
* bytes per snapshot held in the ring, and the default ring's size (budget <= 16 MiB).

Usage: python -m benchmarks.shipping [--snapshots 200000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator

import seedance_otel
from seedance_otel import FaultKind, ResetContextSnapshot, _runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def receiver_process() -> Iterator[tuple[int, int]]:
    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "seedance_otel",
            "receive",
            "--quiet",
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            str(http_port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "listening on ..."
        if "listening" not in line:
            raise RuntimeError(f"receiver did not start: {line}")
        yield grpc_port, http_port
    finally:
        proc.terminate()
        proc.wait(10)


def sample_snapshot(i: int) -> ResetContextSnapshot:
    return ResetContextSnapshot(
        kind=FaultKind.CONNECTION_RESET,
        timestamp_ns=time.time_ns(),
        library="httpx",
        phase="request",
        error_type="httpcore.ReadError",
        error_message="[Errno 104] Connection reset by peer",
        errno=104,
        trace_id=f"{i:032x}",
        span_id=f"{i:016x}",
        server_address="api.example.com",
        server_port=443,
        peer_address="10.1.2.3",
        peer_port=443,
        local_port=40000 + i % 20000,
        socket_cookie=i,
        connection_reused=True,
        connection_idle_s=8.25,
        connection_age_s=120.5,
        connection_requests=17,
        alpn_offered=("http/1.1",),
        alpn_negotiated="http/1.1",
        tls_version="TLSv1.3",
        http_method="POST",
        url=f"https://api.example.com/v1/orders/{i}?page=2",
        peer_reuse_ok_max_idle_s=7.9,
        peer_reuse_ok_count=100 + i,
    )


def throughput(protocol: str, port: int, count: int) -> float:
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="otlp", ring_size=65536, metrics=False)
    runtime = _runtime.RUNTIME
    assert runtime is not None
    samples = [sample_snapshot(i) for i in range(1000)]
    started = time.perf_counter()
    produced = 0
    while produced < count:
        # Produce no faster than the ring can hold, so nothing is overwritten.
        if runtime.ring.unread() > 60_000:
            time.sleep(0.001)
            continue
        runtime.publish(samples[produced % 1000])
        produced += 1
    if not seedance_otel.flush(120):
        raise RuntimeError(f"flush timed out: {seedance_otel.stats()}")
    elapsed = time.perf_counter() - started
    stats = seedance_otel.stats()
    seedance_otel.uninstrument()
    if stats["exported"] != count:
        raise RuntimeError(f"not everything was exported: {stats}")
    return count / elapsed


def capture_cost_while_shipping(port: int) -> tuple[float, float]:
    from benchmarks.overhead import capture_cost

    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
    return capture_cost(5000, exporter="otlp", export_interval_ms=50)


def loop_lag_p99_ms(instrumented: bool, collector_port: int, seconds: float) -> float:
    """p99 lateness of a 1 ms ticker while a fault storm runs on the same loop."""
    import httpx

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from faultservers import Action, HttpFaultServer

    seedance_otel.uninstrument()
    if instrumented:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{collector_port}"
        os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
        seedance_otel.instrument(exporter="otlp", ring_size=256, export_interval_ms=100)

    async def main(url: str) -> list[float]:
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append((time.perf_counter() - before - 0.001) * 1000)

        async def storm() -> None:
            async with httpx.AsyncClient() as client:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.HTTPError):
                        await client.post(url, content=b"x")
            stop.set()

        await asyncio.gather(ticker(), storm())
        return lags

    with HttpFaultServer(lambda info: Action.RST) as server:
        lags = asyncio.run(main(server.url("/storm")))
    seedance_otel.uninstrument()
    lags.sort()
    return lags[int(len(lags) * 0.99) - 1]


def ring_bytes_per_snapshot(count: int = 4096) -> float:
    from seedance_otel._ring import RingBuffer

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ring: RingBuffer[ResetContextSnapshot] = RingBuffer(count)
    for i in range(count):
        ring.append(sample_snapshot(i))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def closed_port() -> int:
    return free_port()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="20,000 snapshots, short storms")
    args = parser.parse_args()
    count = 20_000 if args.quick else args.snapshots
    storm_s = 2.0 if args.quick else 5.0
    print(f"seedance-otel {seedance_otel.__version__}, Python {sys.version.split()[0]}")
    with receiver_process() as (grpc_port, http_port):
        for protocol, port in (("grpc", grpc_port), ("http/protobuf", http_port)):
            rate = throughput(protocol, port, count)
            print(
                f"shipping throughput, OTLP {protocol}: {rate:,.0f} snapshots/s "
                f"({count:,} snapshots; target >= 50,000/s)",
                flush=True,
            )
        p50, p99 = capture_cost_while_shipping(grpc_port)
        print(
            f"capture cost while shipping: p50 {p50:.1f} us, p99 {p99:.1f} us",
            "(budget p99 <= 20 us)",
        )
    down = closed_port()
    raw = loop_lag_p99_ms(False, down, storm_s)
    ins = loop_lag_p99_ms(True, down, storm_s)
    print(
        f"event-loop lag p99 during a fault storm, collector down: raw {raw:.2f} ms, "
        f"instrumented {ins:.2f} ms, added {ins - raw:+.2f} ms (budget <= 1 ms)"
    )
    per = ring_bytes_per_snapshot()
    print(
        f"ring memory: {per:,.0f} bytes per snapshot; default ring (4096) "
        f"{per * 4096 / 2**20:.1f} MiB (budget <= 16 MiB)"
    )


if __name__ == "__main__":
    main()
