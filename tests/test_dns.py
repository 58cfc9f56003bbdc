"""DNS timeouts through aiodns (c-ares) against a name server that never answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import seedance_otel
from seedance_otel import FaultKind

from faultservers import BlackHoleDNS
from metric_points import attributes, histogram_points, metrics_by_name

NAME = "api.seedance.test"


def fetch(
    resolver_kwargs: dict[str, Any], client_timeout: aiohttp.ClientTimeout
) -> BaseException | None:
    async def main() -> BaseException | None:
        resolver = aiohttp.AsyncResolver(**resolver_kwargs)
        connector = aiohttp.TCPConnector(resolver=resolver)
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=client_timeout
            ) as session:
                try:
                    async with session.get(f"http://{NAME}:8080/orders"):
                        return None
                except Exception as exc:
                    return exc
        finally:
            # Cancel c-ares queries still waiting on the black hole before the
            # loop closes (their callbacks would land on a closed loop).
            await resolver.close()

    return asyncio.run(main())


def test_aiodns_resolver_gives_up(instrumented):
    with BlackHoleDNS() as dns:
        started = time.monotonic()
        exc = fetch(
            {"nameservers": [dns.nameserver], "timeout": 1, "tries": 1},
            aiohttp.ClientTimeout(total=10),
        )
        elapsed = time.monotonic() - started
        assert dns.queries >= 1
    assert isinstance(exc, aiohttp.ClientConnectorDNSError)
    [snap] = seedance_otel.snapshots()
    assert (snap.kind, snap.phase, snap.library) == (FaultKind.DNS_TIMEOUT, "dns", "aiohttp")
    assert snap.dns_question == NAME
    assert snap.dns_duration_s is not None and 0.9 <= snap.dns_duration_s <= elapsed + 0.1
    assert snap.server_address == NAME and snap.server_port == 8080
    assert snap.url == f"http://{NAME}:8080/orders"


def test_client_timeout_while_resolving_is_a_dns_timeout(instrumented):
    """The client's connect timeout fires first: a ConnectionTimeoutError that was DNS."""
    with BlackHoleDNS() as dns:
        exc = fetch(
            {"nameservers": [dns.nameserver], "timeout": 5, "tries": 1},
            aiohttp.ClientTimeout(total=10, connect=0.5),
        )
    assert isinstance(exc, aiohttp.ConnectionTimeoutError)
    [snap] = seedance_otel.snapshots()
    assert (snap.kind, snap.phase) == (FaultKind.DNS_TIMEOUT, "dns")
    assert snap.dns_question == NAME
    assert snap.dns_duration_s is not None and 0.45 <= snap.dns_duration_s <= 1.5


def test_successful_lookups_feed_the_dns_metric():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    seedance_otel.uninstrument()
    from seedance_otel import instrumentor

    instrumentor.start({"exporter": "none", "strict": True}, {"meter_provider": provider})
    try:
        with BlackHoleDNS() as dns:
            fetch(
                {"nameservers": [dns.nameserver], "timeout": 1, "tries": 1},
                aiohttp.ClientTimeout(total=5),
            )

        async def resolve_localhost() -> None:
            await asyncio.get_running_loop().getaddrinfo("localhost", 80)

        asyncio.run(resolve_localhost())
        data = reader.get_metrics_data()
    finally:
        seedance_otel.uninstrument()
        provider.shutdown()
    points = histogram_points(metrics_by_name(data)["dns.lookup.duration"])
    by_name = {
        (attributes(p)["dns.question.name"], attributes(p).get("error.type")): p for p in points
    }
    assert ("localhost", None) in by_name
    failed = [key for key in by_name if key[0] == NAME]
    assert failed and failed[0][1] == "timeout"  # the resolver's code, not its class
    assert by_name[failed[0]].sum >= 0.9


@pytest.mark.parametrize("family", ["::1"])
def test_black_hole_on_ipv6(instrumented, family):
    with BlackHoleDNS(host=family) as dns:
        exc = fetch(
            {"nameservers": [f"[{family}]:{dns.port}"], "timeout": 1, "tries": 1},
            aiohttp.ClientTimeout(total=10),
        )
    assert isinstance(exc, aiohttp.ClientConnectorDNSError)
    [snap] = seedance_otel.snapshots()
    assert snap.kind is FaultKind.DNS_TIMEOUT
