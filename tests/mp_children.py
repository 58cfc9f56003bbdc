"""Run as a script: faults made in multiprocessing children, for test_multiprocessing_flush.

``python mp_children.py START_METHOD process|pool FAULTS_PER_CHILD`` starts a
resetting loopback server, makes the faults in children (``Process`` x2, or a
``Pool`` of 2 running 4 tasks) that return without flushing, and leaves the
rest to seedance_otel. Exporter and file come from ``SEEDANCE_OTEL_*`` in the
environment, so spawn and forkserver children configure themselves the same way.
"""

from __future__ import annotations

import multiprocessing
import sys
from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx  # noqa: E402

import seedance_otel  # noqa: E402


def make_faults(url: str, count: int) -> int:
    """In a child: ``count`` requests that the server resets. No flush here."""
    seedance_otel.instrument()  # a no-op where inherited through fork
    faults = 0
    with httpx.Client(timeout=10) as client:
        for i in range(count):
            try:
                client.get(f"{url}/child/{i}")
            except httpx.HTTPError:
                faults += 1
    return faults


def _pool_task(args: tuple[str, int]) -> int:
    return make_faults(*args)


def main() -> int:
    from faultservers import Action, HttpFaultServer

    method, kind, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    context = multiprocessing.get_context(method)
    # A start method's name gives its concrete context (typeshed says only BaseContext).
    assert isinstance(context, (ForkContext, ForkServerContext, SpawnContext)), method
    seedance_otel.instrument()
    with HttpFaultServer(lambda info: Action.RST) as server:
        url = server.url("").rstrip("/")
        if kind == "process":
            children = [context.Process(target=make_faults, args=(url, count)) for _ in range(2)]
            for child in children:
                child.start()
            for child in children:
                child.join(120)
            codes = [child.exitcode for child in children]
            if codes != [0, 0]:
                print(f"children exited with {codes}", file=sys.stderr)
                return 1
        else:
            pool = context.Pool(2)
            faults = pool.map(_pool_task, [(url, count)] * 4)
            pool.close()
            pool.join()
            if faults != [count] * 4:
                print(f"faults per task {faults}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
