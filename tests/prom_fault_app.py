"""An instrumented "application" that makes real connection faults and serves its metrics.

Run by ``test_prometheus_dashboards.py`` as a subprocess (``python
tests/prom_fault_app.py``), scraped by a real Prometheus. It sets up an OTel
``MeterProvider`` with the Prometheus exporter (the same translation of OTel
names to Prometheus names as the collector's ``prometheus`` exporter), turns
seedance_otel on, and then makes every kind of data the dashboards show happen
on loopback with real aiohttp and httpx clients:

* connection resets on reused connections after idle (a middlebox that
  forgets connections idle longer than ``MIDDLEBOX_IDLE_S``), which feed the
  idle-before-fault histogram;
* a burst of resets on fresh connections, more than the ring holds, so
  ``seedance_snapshot_exported_total{error_type="ring_overwrite"}`` exists;
* a DNS timeout (aiohttp's ``AsyncResolver`` pointed at a name server that
  never answers) and successful lookups of ``localhost``;
* ALPN mismatches: a TLS server whose ALPN callback raises, so OpenSSL sends
  alert 120 (``no_application_protocol``);
* idle pooled connections and one active (hanging) request that stay open.

Every fault is made twice, in two rounds. Protocol: on stdout, one line each,
``METRICS <port>`` once the metrics endpoint is up, ``ROUND1`` after the first
round; a line on stdin starts the second round; ``READY <json>`` follows it.
The process then keeps its connections open until SIGTERM, stdin closing, or
``MAX_LIFETIME_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from faultservers import (  # noqa: E402
    Action,
    AlpnRefusingServer,
    BlackHoleDNS,
    HttpFaultServer,
)

SERVICE_NAME = os.environ.get("OTEL_SERVICE_NAME", "seedance-dashboards-test")
PEER = "localhost"  # every fault but the DNS one is on this peer, as the caller named it
DNS_TIMEOUT_NAME = "black-hole.seedance.test"
MIDDLEBOX_IDLE_S = 0.3
IDLE_STEPS_S = (0.6, 1.1)  # two idle times before reuse: two buckets of the histogram
RING_SIZE = 16
BURST = RING_SIZE + 8  # resets on fresh connections: more than the ring holds
MAX_LIFETIME_S = 180.0


def say(line: str) -> None:
    print(line, flush=True)


# -- metrics ------------------------------------------------------------------


def start_metrics() -> int:
    """MeterProvider + PrometheusMetricReader, served on 127.0.0.1 (a free port)."""
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import start_http_server

    reader = PrometheusMetricReader()
    provider = MeterProvider(
        resource=Resource.create({"service.name": SERVICE_NAME}), metric_readers=[reader]
    )
    # instrument() does not take a meter_provider (yet): it uses the global one.
    metrics.set_meter_provider(provider)
    server, _thread = start_http_server(0, addr="127.0.0.1")
    return int(server.server_port)


# -- an h2-only TLS server that refuses every ALPN offer with alert 120 ---------


# -- the faults ---------------------------------------------------------------


async def idle_resets(server: HttpFaultServer) -> None:
    """A POST on a pooled connection idle past the middlebox timeout meets a RST."""
    import aiohttp
    import httpx

    url = f"http://{PEER}:{server.port}"
    for idle_s in IDLE_STEPS_S:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(f"{url}/first") as resp:
                await resp.read()
            await asyncio.sleep(idle_s)
            with contextlib.suppress(aiohttp.ClientError):
                async with session.post(f"{url}/second", data=b"x") as resp:
                    await resp.read()
        async with httpx.AsyncClient(timeout=10) as client:
            await client.get(f"{url}/first")
            await asyncio.sleep(idle_s)
            with contextlib.suppress(httpx.HTTPError):
                await client.post(f"{url}/second", content=b"x")


async def burst_of_resets(server: HttpFaultServer) -> None:
    """More resets than the ring holds (the exporter is ``none``): drops are counted."""
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        for index in range(BURST):
            with contextlib.suppress(httpx.HTTPError):
                await client.post(f"http://{PEER}:{server.port}/burst/{index}", content=b"x")


async def dns_timeout(dns: BlackHoleDNS) -> None:
    """aiohttp + c-ares asking a name server that never answers (gives up after 1 s)."""
    import aiohttp

    resolver = aiohttp.AsyncResolver(nameservers=[dns.nameserver], timeout=1, tries=1)
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with session.get(f"http://{DNS_TIMEOUT_NAME}/") as resp:
                await resp.read()


async def alpn_mismatches(server: AlpnRefusingServer, client_context: ssl.SSLContext) -> None:
    """httpx (http/1.1; then http/1.1 + h2) and aiohttp (http/1.1) meet alert 120."""
    import aiohttp
    import httpx

    url = f"https://{PEER}:{server.port}/"
    for http2 in (False, True):
        async with httpx.AsyncClient(verify=client_context, http2=http2, timeout=10) as client:
            with contextlib.suppress(httpx.HTTPError):
                await client.get(url)
    aiohttp_context = ssl.create_default_context(cafile=os.environ["SEEDANCE_TEST_CA"])
    aiohttp_context.set_alpn_protocols(["http/1.1"])
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=aiohttp_context),
        timeout=aiohttp.ClientTimeout(total=10),
    ) as session:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as resp:
                await resp.read()


class Stdin:
    """Lines and EOF on stdin, read without threads: ``go`` and ``closed`` events."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.go = asyncio.Event()
        self.closed = asyncio.Event()
        self._fd = sys.stdin.fileno()
        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, self._readable)
        self._loop = loop

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        if b"\n" in data:
            self.go.set()
        if not data:
            self._loop.remove_reader(self._fd)
            self.go.set()
            self.closed.set()


async def make_faults(
    middlebox: HttpFaultServer,
    resetter: HttpFaultServer,
    dns: BlackHoleDNS,
    alpn: AlpnRefusingServer,
    client_context: ssl.SSLContext,
) -> None:
    await idle_resets(middlebox)
    await burst_of_resets(resetter)
    await dns_timeout(dns)
    await alpn_mismatches(alpn, client_context)


async def main() -> None:
    import aiohttp
    import httpx
    import trustme

    import seedance_otel

    metrics_port = start_metrics()
    say(f"METRICS {metrics_port}")
    seedance_otel.instrument(exporter="none", ring_size=RING_SIZE)

    ca = trustme.CA()
    ca_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"seedance-test-ca-{os.getpid()}.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    os.environ["SEEDANCE_TEST_CA"] = str(ca_path)
    client_context = ssl.create_default_context(cafile=str(ca_path))
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf_pem = ca_path.with_name(f"seedance-test-leaf-{os.getpid()}.pem")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(leaf_pem))

    loop = asyncio.get_running_loop()
    stdin = Stdin(loop)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stdin.closed.set)

    with (
        HttpFaultServer(middlebox_idle_s=MIDDLEBOX_IDLE_S) as middlebox,
        HttpFaultServer(lambda info: Action.RST) as resetter,
        HttpFaultServer(
            lambda info: Action.HANG if info.path == "/hang" else Action.RESPOND
        ) as ok,
        BlackHoleDNS() as dns,
        AlpnRefusingServer(str(leaf_pem), accept_h2=False) as alpn,
    ):
        # Round 1 creates every series. A counter series appears with its first
        # value already counted, which rate()/increase() cannot see; so the
        # test waits until Prometheus has scraped round 1, then asks for round
        # 2, whose faults the dashboards' rate()/increase() queries do see.
        await make_faults(middlebox, resetter, dns, alpn, client_context)
        say("ROUND1")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stdin.go.wait(), MAX_LIFETIME_S)
        if not stdin.closed.is_set():
            await make_faults(middlebox, resetter, dns, alpn, client_context)

        # Connections that stay open: idle in both pools, one active (hanging).
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=MAX_LIFETIME_S))
        client = httpx.AsyncClient(timeout=MAX_LIFETIME_S)
        async with session.get(f"http://{PEER}:{ok.port}/keep") as resp:
            await resp.read()
        await client.get(f"http://{PEER}:{ok.port}/keep")
        hanging = asyncio.ensure_future(client.get(f"http://{PEER}:{ok.port}/hang"))
        await asyncio.sleep(0.2)

        say(
            "READY "
            + json.dumps(
                {
                    "service_name": SERVICE_NAME,
                    "peer": PEER,
                    "dns_timeout_name": DNS_TIMEOUT_NAME,
                    "stats": seedance_otel.stats(),
                    "kinds": sorted({s.kind.value for s in seedance_otel.snapshots()}),
                }
            )
        )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stdin.closed.wait(), MAX_LIFETIME_S)

        hanging.cancel()
        with contextlib.suppress(BaseException):
            await hanging
        await client.aclose()
        await session.close()
    seedance_otel.uninstrument()
    for path in (ca_path, leaf_pem):
        with contextlib.suppress(OSError):
            path.unlink()


if __name__ == "__main__":
    asyncio.run(main())
