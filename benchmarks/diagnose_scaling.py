"""``seedance-otel diagnose FILE`` at fleet scale: time and memory against input size.

Generates JSONL files of 10k, 100k and 1M snapshots spread over 10 and over
10k peers (each peer with its own idle timeout: resets of stale reuses, idle
closes, some mid-response resets, DNS and pool timeouts), then runs the
command's handler on each file in a fresh process and prints wall time,
CPU time (less disturbed than wall time by others on a shared machine),
peak RSS and the CPU time per snapshot as a ratio to the 10k-snapshot run
of the same peer count, measured in the same run: a ratio near 1 is linear,
a ratio growing with the size is not. Goal: 1M snapshots over 10k peers in
under 60 s and under 1 GiB.

Usage: python -m benchmarks.diagnose_scaling [--sizes 10000,100000,1000000]
       [--peers 10,10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _line(rng: random.Random, index: int, peers: int) -> str:
    """One snapshot's JSON line for a peer picked at random (stable for a seed)."""
    peer = rng.randrange(peers)
    host = f"svc-{peer}.fleet.internal"
    timeout_s = 1.0 + peer % 60
    ts = 1_700_000_000_000_000_000 + index * 1_000_000
    trace = f"{rng.getrandbits(128):032x}"
    common = (
        f'"timestamp_ns": {ts}, "server_address": "{host}", "server_port": 443, '
        f'"trace_id": "{trace}", "span_id": "{rng.getrandbits(64):016x}", '
        f'"peer_address": "127.{peer // 65536 % 256}.{peer // 256 % 256}.{peer % 256}", '
        f'"peer_reuse_ok_max_idle_s": {timeout_s * 0.9 - rng.random() * 0.2:.4f}, '
        f'"peer_reuse_ok_count": {rng.randrange(1, 500)}'
    )
    roll = rng.random()
    idle = timeout_s * (1.02 + rng.random())
    if roll < 0.6:
        return (
            '{"kind": "connection_reset", "library": "httpx", "phase": "request", '
            '"error_type": "httpcore.RemoteProtocolError", '
            '"error_message": "Server disconnected without sending a response.", '
            f'"connection_reused": true, "connection_idle_s": {idle:.4f}, '
            f'"connection_age_s": {idle + rng.random() * 30:.4f}, '
            f'"connection_requests": {rng.randrange(1, 40)}, "http_method": "POST", {common}}}'
        )
    if roll < 0.85:
        return (
            '{"kind": "peer_closed_idle", "library": "aiohttp", "phase": "idle", '
            '"error_type": "EOF", "error_message": "", "connection_reused": true, '
            f'"connection_idle_s": {timeout_s + rng.random() * 0.01:.4f}, '
            f'"connection_age_s": {timeout_s + rng.random() * 30:.4f}, '
            f'"connection_requests": {rng.randrange(1, 40)}, {common}}}'
        )
    if roll < 0.95:
        return (
            '{"kind": "connection_reset", "library": "aiohttp", "phase": "response", '
            '"error_type": "aiohttp.client_exceptions.ClientPayloadError", '
            '"error_message": "Response payload is not completed", '
            f'"connection_reused": false, "connection_requests": 0, {common}}}'
        )
    if roll < 0.98:
        return (
            '{"kind": "dns_timeout", "library": "aiohttp", "phase": "dns", '
            '"error_type": "aiohttp.client_exceptions.ClientConnectorDNSError", '
            '"error_message": "Timeout while contacting DNS servers", '
            f'"dns_question": "{host}", "dns_duration_s": {5 + rng.random():.4f}, {common}}}'
        )
    return (
        '{"kind": "pool_timeout", "library": "httpx", "phase": "pool", '
        f'"error_type": "httpcore.PoolTimeout", "error_message": "", {common}}}'
    )


def generate(path: str, snapshots: int, peers: int, seed: int = 12) -> int:
    """Write ``snapshots`` lines to ``path``; return its size in bytes."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, snapshots, 10_000):
            chunk = range(start, min(snapshots, start + 10_000))
            handle.write("".join(_line(rng, i, peers) + "\n" for i in chunk))
    return os.path.getsize(path)


def child(path: str) -> None:
    """Run the command's handler on ``path`` in this fresh process; print time and memory."""
    from seedance_otel.diagnosis import cli

    args = argparse.Namespace(file=path, json=True)
    report = path + ".findings.json"
    with open(report, "w", encoding="utf-8") as out:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        status = cli.run(args, stdout=out, stderr=sys.stderr)
        elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    peak_kib = after.ru_maxrss
    with open(report, encoding="utf-8") as handle:
        document = json.load(handle)
    os.remove(report)
    print(
        json.dumps(
            {
                "elapsed_s": elapsed,
                "cpu_s": cpu,
                "peak_rss_mib": peak_kib / 1024,
                "status": status,
                "snapshots": document["snapshots"],
                "findings": len(document["findings"]),
            }
        )
    )


def measure(path: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.diagnose_scaling", "--child", path],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
        check=True,
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--peers", default="10,10000")
    parser.add_argument("--keep", metavar="DIR", help="write the files here and keep them")
    parser.add_argument("--child", metavar="FILE", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child)
        return
    sizes = [int(s) for s in options.sizes.split(",")]
    peer_counts = [int(p) for p in options.peers.split(",")]
    directory = options.keep or tempfile.mkdtemp(prefix="diagnose-scaling-")
    os.makedirs(directory, exist_ok=True)
    print(
        f"{'snapshots':>10} {'peers':>6} {'file MB':>8} {'wall s':>7} {'cpu s':>7} "
        f"{'peak MiB':>9} {'cpu us/snap':>11} {'ratio':>6} {'findings':>8}"
    )
    try:
        for peers in peer_counts:
            baseline: float | None = None
            for size in sizes:
                path = os.path.join(directory, f"snapshots-{size}-{peers}.jsonl")
                megabytes = generate(path, size, peers) / 1e6
                result = measure(path)
                per_snapshot = result["cpu_s"] / size * 1e6
                baseline = baseline or per_snapshot
                print(
                    f"{size:>10} {peers:>6} {megabytes:>8.1f} {result['elapsed_s']:>7.1f} "
                    f"{result['cpu_s']:>7.1f} {result['peak_rss_mib']:>9.0f} "
                    f"{per_snapshot:>11.1f} {per_snapshot / baseline:>6.2f} "
                    f"{result['findings']:>8}",
                    flush=True,
                )
                if not options.keep:
                    os.remove(path)
    finally:
        if not options.keep:
            with contextlib.suppress(OSError):
                os.rmdir(directory)


if __name__ == "__main__":
    main()
