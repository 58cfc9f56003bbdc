"""DNS timeouts through the system resolver, run inside a private network namespace.

``tests/test_dns_system_resolver.py`` runs this file with ``ip netns exec``
in a namespace whose ``/etc/resolv.conf`` points at 127.0.0.1, where this
script starts a name server that never answers. It exercises the real
production paths (glibc ``getaddrinfo`` in a thread for aiohttp's
ThreadedResolver and httpx async, in the caller's thread for httpx sync, and
plain asyncio) and prints one JSON object: per case, what the caller saw and
the snapshots recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import seedance_otel  # noqa: E402

from faultservers import BlackHoleDNS  # noqa: E402

NAME = "api.seedance.test"


def outcome(exc: BaseException | None) -> str:
    return "ok" if exc is None else f"{type(exc).__module__}.{type(exc).__qualname__}"


def run_case(name: str, fn: Any) -> dict[str, Any]:
    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="none", strict=True)
    started = time.monotonic()
    try:
        fn()
        error = None
    except Exception as exc:
        error = exc
    return {
        "case": name,
        "caller_saw": outcome(error),
        "elapsed_s": round(time.monotonic() - started, 3),
        "snapshots": [s.to_dict() for s in seedance_otel.snapshots()],
    }


def aiohttp_threaded(connect_timeout: float | None) -> None:
    import aiohttp

    async def main() -> None:
        timeout = aiohttp.ClientTimeout(total=10, connect=connect_timeout)
        connector = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver())
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.get(f"http://{NAME}:8080/x") as resp:
                await resp.read()

    asyncio.run(main())


def httpx_async(connect_timeout: float) -> None:
    import httpx

    async def main() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, connect=connect_timeout)) as client:
            await client.get(f"http://{NAME}:8080/x")

    asyncio.run(main())


def httpx_sync(connect_timeout: float) -> None:
    import httpx

    with httpx.Client(timeout=httpx.Timeout(10, connect=connect_timeout)) as client:
        client.get(f"http://{NAME}:8080/x")


def plain_asyncio_getaddrinfo() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().getaddrinfo(NAME, 6379)

    asyncio.run(main())


def plain_asyncio_open_connection() -> None:
    async def main() -> None:
        await asyncio.open_connection(NAME, 6379)

    asyncio.run(main())


def main() -> None:
    with open("/etc/resolv.conf") as f:
        resolv = f.read()
    results: dict[str, Any] = {"resolv_conf": resolv, "cases": []}
    with BlackHoleDNS(port=53) as dns:
        cases = [
            ("aiohttp-threaded-client-timeout", lambda: aiohttp_threaded(0.5)),
            ("aiohttp-threaded-resolver-gives-up", lambda: aiohttp_threaded(None)),
            ("httpx-async-client-timeout", lambda: httpx_async(0.5)),
            ("httpx-async-resolver-gives-up", lambda: httpx_async(8)),
            ("httpx-sync", lambda: httpx_sync(0.5)),
            ("asyncio-getaddrinfo", plain_asyncio_getaddrinfo),
            ("asyncio-open-connection", plain_asyncio_open_connection),
        ]
        for name, fn in cases:
            results["cases"].append(run_case(name, fn))
        results["queries_seen"] = dns.queries
    seedance_otel.uninstrument()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
