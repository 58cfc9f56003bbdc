"""Shipping: encoder cost, throughput, event-loop lag while shipping, capture cost, ring memory.

Prints, for the SDK's encoder (``encode_logs``) and ours side by side in the
same run:

* CPU per snapshot of one export (encode + send, all the process's threads)
  and the snapshots/s one thread reaches exporting back to back (budget
  <= 20 us, >= 50,000/s), over OTLP/gRPC and OTLP/HTTP to a counting OTLP
  endpoint (``benchmarks._otlp_sink``, standing for a remote collector);
* sustained shipping throughput (snapshots/s) through ``instrument()``'s ring
  and shipper, to that endpoint and to a ``seedance-otel receive`` process
  (which decodes every record in Python and sets its own pace), gRPC and HTTP;
* asyncio event-loop lag p50/p99 in this process while a thread exports at
  full speed, against the same loop with nothing shipping, in alternating
  rounds (budget: p99 +1 ms): over gRPC and HTTP to the counting endpoint,
  and over HTTP to nginx when it is installed (it answers 200 without
  reading the request in Python: on a 2-core machine the counting
  endpoint's own CPU competes with the loop, as a remote collector's would
  not);
* the cost of one capture while the shipper exports (p50/p99; budget p99 <= 20 us);
* event-loop lag p99 during a fault storm with the collector down, against the
  same loop and storm without instrumentation (budget: <= 1 ms more);
* bytes per snapshot held in the ring, and the default ring's size (budget <= 16 MiB).

Usage: python -m benchmarks.shipping [--snapshots 50000] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import seedance_otel
from seedance_otel import FaultKind, ResetContextSnapshot, _runtime

if TYPE_CHECKING:
    from benchmarks.overhead import CaptureTimes

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


@contextlib.contextmanager
def counting_endpoint() -> Iterator[tuple[int, int]]:
    """``benchmarks._otlp_sink`` in its own process: (gRPC port, HTTP port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._otlp_sink"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        words = proc.stdout.readline().split()
        if words[:1] != ["listening"]:
            raise RuntimeError(f"OTLP endpoint did not start: {words}")
        yield int(words[1]), int(words[2])
        proc.stdin.close()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def nginx_endpoint() -> Iterator[int | None]:
    """An nginx process answering every request with 200 (its port), or
    ``None`` when nginx is not installed."""
    binary = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if binary is None:
        yield None
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        temp_paths = " ".join(
            f"{name}_temp_path {tmp}/{name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = os.path.join(tmp, "nginx.conf")
        with open(config, "w") as f:
            f.write(
                f"daemon off; master_process off; pid {tmp}/nginx.pid;\n"
                f"error_log {tmp}/error.log warn; events {{ worker_connections 64; }}\n"
                f"http {{ access_log off; {temp_paths} client_max_body_size 64m;\n"
                f"server {{ listen 127.0.0.1:{port}; location / {{ return 200; }} }} }}\n"
            )
        proc = subprocess.Popen([binary, "-p", tmp, "-c", config], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=1),
                ):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start")
                time.sleep(0.05)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


ENCODERS = ("sdk", "ours")


@contextlib.contextmanager
def encoder(which: str) -> Iterator[None]:
    """Sinks made inside use the SDK's ``encode_logs`` (``sdk``) or ours."""
    from seedance_otel.exporting import sinks

    real = sinks.encoded_exporter
    if which == "sdk":
        sinks.encoded_exporter = lambda protocol: None
    try:
        yield
    finally:
        sinks.encoded_exporter = real


def otlp_sink(protocol: str, port: int, which: str):
    from seedance_otel.exporting.sinks import OtlpSink

    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    sink = OtlpSink(fast=which == "ours")
    assert sink.encodes_itself is (which == "ours")
    return sink


def export_cost(protocol: str, port: int, which: str, count: int) -> tuple[float, float]:
    """(CPU us per snapshot, snapshots/s) of one thread exporting back to back."""
    sink = otlp_sink(protocol, port, which)
    step = sink.max_records_per_request
    batches = [
        [sample_snapshot(i) for i in range(start, start + step)] for start in range(0, 1024, step)
    ]
    sink.export(batches[0])  # connect
    done = 0
    cpu, wall = time.process_time(), time.perf_counter()
    while done < count:
        if sink.export(batches[(done // step) % len(batches)]) != "exported":
            raise RuntimeError(f"export failed ({which}, {protocol})")
        done += step
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    sink.shutdown()
    return cpu / done * 1e6, done / wall


def lag_rounds(protocol: str, port: int, rounds: int, seconds: float) -> dict[str, list[float]]:
    """Per round, the event loop's lag p50/p99 (ms) with nothing shipping and
    with a thread exporting 512-snapshot batches at full speed (as the
    shipper does: one request per ``max_records_per_request``, a GIL release
    between requests), for each encoder; the rounds alternate."""
    sinks = {which: otlp_sink(protocol, port, which) for which in ENCODERS}
    batch = [sample_snapshot(i) for i in range(512)]
    out: dict[str, list[float]] = {}
    for _ in range(rounds):
        for which in ("none", *ENCODERS):
            sink = sinks.get(which)
            p50, p99, rate = loop_lag_while(
                None if sink is None else shipping_work(sink, batch), seconds
            )
            out.setdefault(f"{which} p50", []).append(p50)
            out.setdefault(f"{which} p99", []).append(p99)
            out.setdefault(f"{which} rate", []).append(rate)
    for sink in sinks.values():
        sink.shutdown()
    return out


def print_lag(protocol: str, target: str, lags: dict[str, list[float]], round_s: float) -> None:
    med = {name: statistics.median(values) for name, values in lags.items()}
    rounds = len(lags["none p99"])
    print(
        f"event-loop lag while a thread ships at full speed (OTLP {protocol} to the "
        f"{target}, median of {rounds} alternating rounds of {round_s:.0f} s):"
    )
    print(f"  nothing shipping: p50 {med['none p50']:.2f} ms, p99 {med['none p99']:.2f} ms")
    for which, label in (("sdk", "SDK encoder"), ("ours", "our encoder")):
        print(
            f"  {label}: p50 {med[which + ' p50']:.2f} ms, p99 {med[which + ' p99']:.2f} "
            f"ms (p99 {med[which + ' p99'] - med['none p99']:+.2f} ms; budget +1 ms), "
            f"{med[which + ' rate']:,.0f} snapshots/s"
        )
    print(
        "  per-round p99 (ms): "
        + "; ".join(
            f"{which} " + " ".join(f"{v:.1f}" for v in lags[which + " p99"])
            for which in ("none", *ENCODERS)
        ),
        flush=True,
    )


def shipping_work(sink, batch):
    step = sink.max_records_per_request

    def work() -> int:
        for start in range(0, len(batch), step):
            if start:
                time.sleep(0)
            sink.export(batch[start : start + step])
        return len(batch)

    return work


def loop_lag_while(work: Callable[[], int] | None, seconds: float) -> tuple[float, float, float]:
    """Lateness of a 1 ms asyncio ticker (p50, p99 in ms) while ``work`` runs
    back to back in a thread, and the snapshots/s it got through."""
    stop = threading.Event()
    shipped = [0]

    def worker() -> None:
        assert work is not None
        while not stop.is_set():
            shipped[0] += work()

    async def ticker() -> list[float]:
        lags = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - before - 0.001) * 1000)
        return lags

    thread = threading.Thread(target=worker) if work is not None else None
    if thread is not None:
        thread.start()
    started = time.perf_counter()
    lags = asyncio.run(ticker())
    elapsed = time.perf_counter() - started
    stop.set()
    if thread is not None:
        thread.join()
    lags.sort()
    return statistics.median(lags), lags[int(len(lags) * 0.99) - 1], shipped[0] / elapsed


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
        peer_address="127.0.2.3",
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


def throughput(protocol: str, port: int, count: int, which: str = "ours") -> float:
    """Snapshots/s published into the ring and shipped by ``instrument()``'s shipper."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    seedance_otel.uninstrument()
    with encoder(which):
        seedance_otel.instrument(
            exporter="otlp", ring_size=65536, metrics=False, span_events=False
        )
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


def capture_cost_while_shipping(port: int) -> CaptureTimes:
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
    parser.add_argument("--snapshots", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5, help="event-loop lag rounds")
    parser.add_argument("--quick", action="store_true", help="10,000 snapshots, short runs")
    args = parser.parse_args()
    count = 10_000 if args.quick else args.snapshots
    rounds, round_s = (2, 1.0) if args.quick else (args.rounds, 2.0)
    storm_s = 2.0 if args.quick else 5.0
    print(f"seedance-otel {seedance_otel.__version__}, Python {sys.version.split()[0]}")
    protocols = ("grpc", "http/protobuf")
    with counting_endpoint() as (sink_grpc, sink_http), receiver_process() as (rec_grpc, rec_http):
        sink_ports = dict(zip(protocols, (sink_grpc, sink_http), strict=True))
        receiver_ports = dict(zip(protocols, (rec_grpc, rec_http), strict=True))
        print("export cost, one thread exporting back to back to a counting OTLP endpoint:")
        for protocol in protocols:
            costs = {
                which: export_cost(protocol, sink_ports[protocol], which, count // 4)
                for which in ENCODERS
            }
            (sdk_cpu, sdk_rate), (cpu, rate) = costs["sdk"], costs["ours"]
            print(
                f"  OTLP {protocol}: SDK encoder {sdk_cpu:.1f} us CPU/snapshot, "
                f"{sdk_rate:,.0f}/s; ours {cpu:.1f} us, {rate:,.0f}/s "
                f"(x{sdk_cpu / cpu:.1f} less CPU; budget <= 20 us, >= 50,000/s)",
                flush=True,
            )
        print("shipping throughput through instrument()'s ring and shipper:")
        for target, ports in (("counting endpoint", sink_ports), ("receiver", receiver_ports)):
            for protocol in protocols:
                rates = {
                    which: throughput(protocol, ports[protocol], count, which)
                    for which in ENCODERS
                }
                print(
                    f"  to the {target}, OTLP {protocol}: SDK encoder "
                    f"{rates['sdk']:,.0f}/s, ours {rates['ours']:,.0f}/s "
                    f"({count:,} snapshots; target >= 50,000/s)",
                    flush=True,
                )
        with nginx_endpoint() as nginx_port:
            lag_targets = [
                ("grpc", sink_grpc, "counting endpoint"),
                ("http/protobuf", sink_http, "counting endpoint"),
            ]
            if nginx_port is not None:
                lag_targets.append(("http/protobuf", nginx_port, "nginx"))
            for protocol, port, target in lag_targets:
                print_lag(protocol, target, lag_rounds(protocol, port, rounds, round_s), round_s)
        from benchmarks.overhead import capture_cost

        captures: dict[str, CaptureTimes] = {"nothing shipping": capture_cost(5000)}
        for which, label in (("sdk", "SDK encoder"), ("ours", "our encoder")):
            with encoder(which):
                captures[f"shipping, {label}"] = capture_cost_while_shipping(rec_grpc)
        print(
            "capture cost (p50 / p99; the control of the same length timed between them): "
            + "; ".join(
                f"{name} {t.median_us:.1f} / {t.p99_us:.1f} us "
                f"(control {t.control_median_us:.1f} / {t.control_p99_us:.1f} us)"
                for name, t in captures.items()
            )
            + " (budget p99 <= 20 us)",
            flush=True,
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
