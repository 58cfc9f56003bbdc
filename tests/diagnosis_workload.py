"""Real workloads for the diagnosis tests: many clients idling just below and above a timeout.

``run_idle_workload(plans)`` runs, in one event loop and all at once, one
"lane" per planned idle time: a fresh client (so the lane owns its
connection) makes a request, sleeps the planned idle, and makes another on
the same pooled connection. Against ``HttpFaultServer(middlebox_idle_s=T)``
lanes below ``T`` reuse successfully and lanes above meet a RST: the mixed
workload the idle-timeout estimate is judged on. Every client is closed and
every request bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from seedance_otel.diagnosis import Finding

LIBRARIES = ("aiohttp", "httpx")

# Fractions of the hidden timeout: successes below, failures above, with a
# 10 % margin either side so scheduler jitter on a loaded machine cannot move
# a lane across the timeout.
OK_FRACTIONS = (0.2, 0.45, 0.7, 0.9)
FAIL_FRACTIONS = (1.1, 1.3)


@dataclasses.dataclass(frozen=True)
class Lane:
    library: str
    url: str
    idle_s: float
    second_path: str = "/again"
    method: str = "POST"
    """POST by default: aiohttp silently retries a GET that met a stale connection."""
    httpx_keepalive_s: float | None = 60.0
    """Above every planned idle, or ``None`` for httpx's own default (5 s)."""


async def _aiohttp_lane(lane: Lane) -> list[Any]:
    import aiohttp

    results: list[Any] = []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for index, path in enumerate(("/first", lane.second_path)):
            if index:
                await asyncio.sleep(lane.idle_s)
            try:
                data = b"x" if lane.method == "POST" else None
                async with session.request(lane.method, lane.url + path, data=data) as resp:
                    await resp.read()
                    results.append(resp.status)
            except Exception as exc:
                results.append(exc)
    return results


async def _httpx_lane(lane: Lane) -> list[Any]:
    import httpx

    results: list[Any] = []
    # keepalive_expiry above every planned idle: httpx's own 5 s default
    # would otherwise retire the connection before a 5 s peer timeout does.
    limits = httpx.Limits(keepalive_expiry=lane.httpx_keepalive_s)
    if lane.httpx_keepalive_s is None:
        limits = httpx.Limits()
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        for index, path in enumerate(("/first", lane.second_path)):
            if index:
                await asyncio.sleep(lane.idle_s)
            try:
                content = b"x" if lane.method == "POST" else None
                resp = await client.request(lane.method, lane.url + path, content=content)
                results.append(resp.status_code)
            except Exception as exc:
                results.append(exc)
    return results


async def _run(lanes: list[Lane]) -> list[list[Any]]:
    runners = {"aiohttp": _aiohttp_lane, "httpx": _httpx_lane}
    return await asyncio.gather(*(runners[lane.library](lane) for lane in lanes))


def run_lanes(lanes: list[Lane]) -> list[list[Any]]:
    """Run every lane concurrently; per lane, the status or exception of each request."""
    return asyncio.run(_run(lanes))


def mixed_lanes(library: str, url: str, timeout_s: float) -> list[Lane]:
    """Idle times below and above ``timeout_s``, one noisy reset after no idle, one GET.

    The noise lane's second request goes to ``/noise``, which the server
    answers with a RST at once: a reset of a reused connection after a few
    milliseconds of idle that has nothing to do with the idle timeout.
    """
    lanes = [Lane(library, url, f * timeout_s) for f in OK_FRACTIONS + FAIL_FRACTIONS]
    lanes.append(Lane(library, url, 0.0, second_path="/noise"))
    # A GET past the timeout: aiohttp retries it on a new connection and the
    # caller sees a 200; the snapshot of the failed attempt remains.
    lanes.append(Lane(library, url, FAIL_FRACTIONS[0] * timeout_s, method="GET"))
    return lanes


def param(finding: Finding, name: str) -> float:
    """A numeric parameter the finding must carry (``params`` values may be ``None``)."""
    value = finding.params[name]
    assert value is not None, (name, finding)
    return value
