"""redis-py (``redis.asyncio``) against a real redis-server that drops idle clients.

The server runs with ``timeout 2``: it closes a client idle for more than 2 s
(counted in whole seconds, so 2-3 s after its last command). The FIN reaches
an idle pooled connection; redis-py writes the next command into it and reads
EOF. That must read as a stale reuse with the idle time before that command
and that command's trace, whether redis-py retries it (the default) or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from redis_server import RedisServer

import seedance_otel
from seedance_otel import FaultKind

redis_asyncio = pytest.importorskip("redis.asyncio")
redis_exceptions = pytest.importorskip("redis.exceptions")
from redis.asyncio.retry import Retry  # noqa: E402
from redis.backoff import NoBackoff  # noqa: E402

SERVER_TIMEOUT_S = 2
PAST_TIMEOUT_S = 3.3
"""Past the server's close (2-3 s, plus its 100 ms cron): the FIN is in."""
WITHIN_TIMEOUT_S = 1.2
"""Safely within: the server's whole-second count reaches 2 only after 2 s real idle."""

tracer = TracerProvider().get_tracer("test")


def trace_hex(span: Any) -> str:
    return f"{span.get_span_context().trace_id:032x}"


def redis_snaps() -> list[seedance_otel.ResetContextSnapshot]:
    return [s for s in seedance_otel.snapshots() if s.library == "asyncio"]


def client(port: int, retries: bool = True, **kwargs: Any) -> Any:
    if not retries:
        kwargs["retry"] = Retry(NoBackoff(), 0)
    return redis_asyncio.Redis(host="127.0.0.1", port=port, **kwargs)


async def traced(name: str, call: Callable[[], Awaitable[Any]]) -> tuple[Any, str]:
    """Run one command in its own span: (result or the exception, trace id)."""
    with tracer.start_as_current_span(name) as span:
        try:
            result = await call()
        except Exception as exc:
            result = exc
    return result, trace_hex(span)


def assert_stale_reuse(snap: seedance_otel.ResetContextSnapshot, trace_id: str) -> None:
    assert (snap.kind, snap.phase) == (FaultKind.CONNECTION_RESET, "request")
    assert snap.client_library == "redis"
    assert snap.connection_reused is True
    assert snap.connection_requests is not None and snap.connection_requests >= 2
    assert snap.connection_idle_s is not None
    assert SERVER_TIMEOUT_S <= snap.connection_idle_s < PAST_TIMEOUT_S + 1.0
    assert snap.trace_id == trace_id  # the command that was hit, not the connect
    assert "before the write that met it" in snap.error_message


@pytest.mark.parametrize("retries", [True, False], ids=["retries-on", "retries-off"])
def test_stale_reuse_after_the_server_closed_an_idle_client(instrumented, retries):
    with RedisServer(timeout_s=SERVER_TIMEOUT_S) as server:

        async def main() -> tuple[list[Any], list[str]]:
            r = client(server.port, retries)
            results, traces = [], []
            try:
                for index, pause in enumerate((0.0, 0.3, PAST_TIMEOUT_S)):
                    await asyncio.sleep(pause)
                    result, trace_id = await traced(f"set-{index}", lambda: r.set("k", "v"))
                    results.append(result)
                    traces.append(trace_id)
            finally:
                await r.aclose()
            return results, traces

        results, traces = asyncio.run(main())
    assert results[:2] == [True, True]
    if retries:
        assert results[2] is True  # redis-py retried on a new connection: nobody saw it
    else:
        assert isinstance(results[2], redis_exceptions.ConnectionError)
    [snap] = redis_snaps()
    assert_stale_reuse(snap, traces[2])


def test_blpop_killed_while_waiting_is_a_reset_of_that_command(instrumented):
    with RedisServer() as server:

        async def main() -> tuple[Any, str]:
            waiter = client(server.port, retries=False, single_connection_client=True)
            killer = client(server.port)
            try:
                waiter_id = await waiter.client_id()

                async def kill_soon() -> None:
                    await asyncio.sleep(0.3)
                    await killer.client_kill_filter(_id=waiter_id)

                kill = asyncio.ensure_future(kill_soon())
                result, trace_id = await traced("blpop", lambda: waiter.blpop(["q"], timeout=10))
                await kill
                return result, trace_id
            finally:
                await waiter.aclose()
                await killer.aclose()

        result, trace_id = asyncio.run(main())
    assert isinstance(result, redis_exceptions.ConnectionError)
    [snap] = redis_snaps()
    assert (snap.kind, snap.phase) == (FaultKind.CONNECTION_RESET, "request")
    assert snap.trace_id == trace_id
    assert snap.client_library == "redis"
    # Hit while waiting, right after the previous command: not an idle close.
    assert snap.connection_reused is True
    assert snap.connection_idle_s is not None and snap.connection_idle_s < 1.0
    assert "before the write" not in snap.error_message


def test_diagnosis_estimates_the_server_timeout_and_gives_redis_advice(instrumented):
    with RedisServer(timeout_s=SERVER_TIMEOUT_S) as server:

        async def main() -> list[Any]:
            r = client(server.port)
            results = []
            try:
                for index, pause in enumerate((0.0, WITHIN_TIMEOUT_S, PAST_TIMEOUT_S)):
                    await asyncio.sleep(pause)
                    result, _ = await traced(f"get-{index}", lambda: r.get("k"))
                    results.append(result)
            finally:
                await r.aclose()
            return results

        results = asyncio.run(main())
    assert results == [None, None, None]  # retried: the application saw nothing
    findings = seedance_otel.diagnose()
    codes = [f.code for f in findings]
    assert "reset_on_connect" not in codes
    [stale] = [f for f in findings if f.code == "stale_keepalive"]
    estimate = stale.params["peer_idle_timeout_s"]
    assert estimate is not None and 2.0 <= estimate <= 3.0
    assert stale.fix.startswith("redis-py: ")
    assert "health_check_interval" in stale.fix and "timeout 0" in stale.fix
    assert "httpx" not in stale.fix and "aiohttp" not in stale.fix
    assert stale.evidence["libraries"] == ["asyncio"]
