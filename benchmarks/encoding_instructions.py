"""Instructions per snapshot to encode an OTLP logs request: the SDK's encoder and ours.

``benchmarks.shipping`` times encoding on the wall clock, which on a shared
machine wanders from run to run (and from machine to machine) by more than
the differences worth knowing. This counts the main thread's instructions
under valgrind instead: encoding 1 and 3 batches of 512 snapshots, so that
start-up cancels, minus the same runs building their snapshots only. Each
batch's snapshots are new (new timestamps, ports, cookies, trace ids and
URLs, one peer and error), as in a fault storm.

Usage: python -m benchmarks.encoding_instructions
"""

from __future__ import annotations

import os
import time

from benchmarks._callgrind import main_thread_instructions

BATCH = 512

CHILD = """
import gc, sys, time
gc.disable()
sys.path.insert(0, {root!r})
which, batches, encode = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "encode"
from benchmarks.shipping import sample_snapshot
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from seedance_otel.exporting.otlp_encoding import LogsRequestEncoder
from seedance_otel.exporting.sinks import to_log_records
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
resource, scope = Resource.create({{}}), InstrumentationScope("seedance_otel", "1")
encoder = LogsRequestEncoder(resource, scope)
if which == "ours":
    run = lambda batch: encoder.encode(batch, time.time_ns())
else:
    run = lambda batch: encode_logs(
        to_log_records(batch, resource, scope)
    ).SerializeToString()
run([sample_snapshot(10**6)])  # imports, caches and the resource's encoding
for k in range(batches):
    batch = [sample_snapshot(i + {size} * k) for i in range({size})]
    if encode:
        run(batch)
"""


def per_snapshot(which: str) -> float:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = CHILD.format(root=root, size=BATCH)
    counts = {
        (batches, action): main_thread_instructions(code, which, str(batches), action)
        for batches in (1, 3)
        for action in ("encode", "build")
    }
    encoding = (counts[3, "encode"] - counts[1, "encode"]) - (
        counts[3, "build"] - counts[1, "build"]
    )
    return encoding / (2 * BATCH)


def main() -> None:
    started = time.monotonic()
    print(
        "instructions per snapshot to encode"
        f" (valgrind callgrind, main thread, batches of {BATCH})"
    )
    results = {which: per_snapshot(which) for which in ("sdk", "ours")}
    print(
        f"  SDK encoder (to_log_records + encode_logs + SerializeToString): {results['sdk']:,.0f}"
    )
    print(f"  ours (LogsRequestEncoder.encode): {results['ours']:,.0f}")
    print(f"  ratio: x{results['sdk'] / results['ours']:.1f}")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
