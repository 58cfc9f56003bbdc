"""Added CPU per faulting request in a storm, raw and instrumented alternating in one process.

``benchmarks.storms`` runs each mode in a fresh process; on a shared machine
two processes running the same code differ by tens of microseconds per
fault (one run gave +17 and +50 us for two modes whose main threads do the
same work), more than the 25 us budget. This measures as
``benchmarks.overhead`` does for the happy path: in one process per storm,
rounds of the same number of faults alternate between uninstrumented and
``instrument()``-ed (default collapsing, 10 full snapshots per key per
second), and the added CPU is the median of the paired round differences,
with its interquartile range. CPU is the main thread's
(``time.thread_time``), per fault.

Two metrics set-ups, each its own process:

* ``api``: no SDK ``MeterProvider`` (the OTel API's no-op meter);
* ``sdk``: an SDK ``MeterProvider`` (with an in-memory reader), as with
  ``opentelemetry-instrument``; each closed connection's
  ``http.client.connection.duration`` is then one SDK histogram record.

Snapshots go to no exporter (``exporter="none"``): shipping runs on its own
thread, measured by ``benchmarks.shipping``, and instrumenting and
uninstrumenting between rounds must not wait on a flush.

Usage: python -m benchmarks.storm_paired [--rounds 20] [--faults 400] [--only "httpx new"]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

from benchmarks import storms

METRICS = ("api", "sdk")


def child(library: str, storm: str, metrics: str, url: str, rounds: int, faults: int) -> None:
    import seedance_otel

    if metrics == "sdk":
        from opentelemetry import metrics as otel_metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        otel_metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))

    def run(instrumented: bool) -> float:
        """CPU us per fault of one round."""
        if instrumented:
            seedance_otel.instrument(exporter="none")
        try:
            storms.STOP.clear()
            client = storms._client(library, storm, limit=faults)
            cpu = time.thread_time()
            done = asyncio.run(client(url))
            cpu = time.thread_time() - cpu
        finally:
            if instrumented:
                seedance_otel.uninstrument()
        if done != faults:
            raise RuntimeError(f"{done} faults of {faults}")
        return cpu / done * 1e6

    # Warm up: imports, caches, the server's first accepts.
    run(False)
    run(True)
    raw: list[float] = []
    added: list[float] = []
    for round_ in range(rounds):
        # Alternate the order, so a trend on the machine hits both modes.
        if round_ % 2 == 0:
            base, ours = run(False), run(True)
        else:
            ours, base = run(True), run(False)
        raw.append(base)
        added.append(ours - base)
    print(json.dumps({"raw": raw, "added": added}))


def _run_child(
    library: str, storm: str, metrics: str, url: str, rounds: int, faults: int
) -> dict[str, list[float]]:
    args = [library, storm, metrics, url, str(rounds), str(faults)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.storm_paired", "--child", *args],
        cwd=storms.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{library} {storm} {metrics} failed:\n{done.stderr[-2000:]}")
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="pairs of rounds per storm")
    parser.add_argument("--faults", type=int, default=400, help="faults per round")
    parser.add_argument("--only", default="", help="substring of 'library storm' to run")
    parser.add_argument("--child", nargs=6, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        library, storm, metrics, url, rounds, faults = args.child
        child(library, storm, metrics, url, int(rounds), int(faults))
        return
    started = time.monotonic()
    print(
        f"added CPU per faulting request, main thread, {args.rounds} alternating pairs of "
        f"rounds of {args.faults} faults in one process; median (IQR); budget +25 us/fault"
    )
    print(f"{'storm':<24}{'raw us/fault':>13}{'added, API metrics':>26}{'added, SDK metrics':>26}")
    for library, storm, name in storms.selected(args.only):
        cells = []
        raws: list[float] = []
        with storms.storm_server(storm) as url:
            for metrics in METRICS:
                result = _run_child(library, storm, metrics, url, args.rounds, args.faults)
                raws.extend(result["raw"])
                q1, median, q3 = _quartiles(result["added"])
                cells.append(f"{median:+.1f} ({q1:+.1f}, {q3:+.1f})")
        print(
            f"{name:<24}{statistics.median(raws):>13.1f}{cells[0]:>26}{cells[1]:>26}",
            flush=True,
        )
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
