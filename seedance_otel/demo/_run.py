"""The three traps, live: a middlebox, an h2-only server and a silent name server.

Everything happens on loopback in about ten seconds: real aiohttp and httpx
clients walk into each trap, seedance-otel records the faults and ships them
over real OTLP to an embedded ``receive`` sink (or to
``OTEL_EXPORTER_OTLP_ENDPOINT`` when it is set, so the demo can feed the
compose stack's dashboards), every snapshot is printed as it arrives, and the
diagnosis says what to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import seedance_otel

from .._snapshot import ResetContextSnapshot
from ..exporting.sinks import format_line
from .faultservers import BlackHoleDNS, H2OnlyResetServer, HttpFaultServer

__all__ = ["MIDDLEBOX_IDLE_S", "TRAPS", "run_demo"]

MIDDLEBOX_IDLE_S = 2.0
"""The middlebox forgets connections idle longer than this."""
SUCCESS_IDLES_S = (0.6, 1.0, 1.4, 1.8)
FAILURE_IDLES_S = (2.3, 2.6, 3.0)
DNS_NAME = "api.payments.internal"
REQUIRED_MODULES = ("aiohttp", "aiodns", "httpx", "trustme")

# Trap name -> whether a finding code belongs to it.
TRAPS: dict[str, Callable[[str], bool]] = {
    "stale keep-alive behind a middlebox": lambda code: code == "stale_keepalive",
    "server requires HTTP/2 (ALPN)": lambda code: code.startswith("alpn"),
    "name server that never answers": lambda code: code == "dns_timeout",
}


class _Printer:
    """Serialises output from the receiver's threads and the demo's loop."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, text: str = "") -> None:
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()


async def _keepalive_trap(url: str, say: _Printer) -> None:
    """Reuse pooled connections after idling below and above the middlebox's limit."""
    import aiohttp
    import httpx

    async def httpx_after(idle_s: float) -> None:
        async with httpx.AsyncClient() as client:
            await client.get(url + "/orders")
            await asyncio.sleep(idle_s)
            with contextlib.suppress(httpx.HTTPError):
                await client.post(url + "/orders", content=b"{}")

    async def aiohttp_after(idle_s: float) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/stock") as resp:
                await resp.read()
            await asyncio.sleep(idle_s)
            with contextlib.suppress(aiohttp.ClientError):
                async with session.post(url + "/stock", data=b"{}") as resp:
                    await resp.read()

    say(
        f"  trap 1: httpx and aiohttp reuse pooled connections after "
        f"{', '.join(f'{s:g}' for s in SUCCESS_IDLES_S + FAILURE_IDLES_S)} s idle; "
        f"a middlebox forgets them after {MIDDLEBOX_IDLE_S:g} s"
    )
    await asyncio.gather(
        *(httpx_after(s) for s in SUCCESS_IDLES_S + FAILURE_IDLES_S),
        aiohttp_after(1.2),
        aiohttp_after(2.5),
    )


async def _alpn_trap(url: str, trust: ssl.SSLContext, say: _Printer) -> None:
    """HTTP/1.1 clients against a TLS server that speaks only h2 and resets the rest."""
    import aiohttp
    import httpx

    say(
        "  trap 2: httpx (offers http/1.1) and aiohttp (a context with no ALPN) "
        "meet an h2-only server"
    )
    with contextlib.suppress(httpx.HTTPError):
        async with httpx.AsyncClient(verify=trust) as client:
            await client.post(url + "/charge", content=b"{}")
    user_context = ssl.create_default_context(cafile=None)
    user_context.load_verify_locations(cadata=_ca_pem(trust))
    with contextlib.suppress(aiohttp.ClientError):
        connector = aiohttp.TCPConnector(ssl=user_context)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(url + "/charge", data=b"{}") as resp,
        ):
            await resp.read()


def _ca_pem(context: ssl.SSLContext) -> str:
    certs = context.get_ca_certs(binary_form=True)
    return "".join(ssl.DER_cert_to_PEM_cert(der) for der in certs)


async def _dns_trap(nameserver: str, say: _Printer) -> None:
    """aiohttp's aiodns resolver against a name server that never answers."""
    import aiohttp

    say(f"  trap 3: aiohttp resolves {DNS_NAME} through a name server that never answers")

    async def fetch(resolver_timeout_s: float, client_timeout: aiohttp.ClientTimeout) -> None:
        resolver = aiohttp.AsyncResolver(
            nameservers=[nameserver], timeout=resolver_timeout_s, tries=1
        )
        try:
            connector = aiohttp.TCPConnector(resolver=resolver)
            async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as s:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with s.get(f"http://{DNS_NAME}:8443/refunds") as resp:
                        await resp.read()
        finally:
            await resolver.close()

    await asyncio.gather(
        fetch(1.0, aiohttp.ClientTimeout(total=10)),  # the resolver gives up
        fetch(5.0, aiohttp.ClientTimeout(total=10, connect=1.5)),  # the client's timeout fires
    )


async def _with_progress(work: Awaitable[Any], say: _Printer, started: float) -> None:
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait([task], timeout=1.0)
        if not task.done():
            say(f"  ... {time.monotonic() - started:4.1f} s, waiting for the traps to spring")
    task.result()


def _missing_modules() -> list[str]:
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def run_demo(out: TextIO | None = None) -> int:
    """Run the demo; 0 only if all three traps were diagnosed."""
    say = _Printer(out or sys.stdout)
    missing = _missing_modules()
    if missing:
        say(f"seedance-otel demo needs {', '.join(missing)}: pip install 'seedance-otel[demo]'")
        return 2
    import trustme

    from ..diagnosis import diagnose
    from ..diagnosis._render import render_findings
    from ..receiver import ReceivedSnapshot, Receiver

    started = time.monotonic()
    external = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    os.environ.setdefault("OTEL_SERVICE_NAME", "seedance-demo")

    def arrived(item: ReceivedSnapshot) -> None:
        say(f"  received: {format_line(item.snapshot)}")

    receiver = None if external else Receiver("127.0.0.1", 0, None, on_snapshot=arrived)
    if receiver is not None:
        receiver.start()
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.grpc_endpoint
        os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
    destination = external or f"{receiver.grpc_endpoint if receiver else ''} (embedded receiver)"
    say(f"seedance-otel demo: three traps on loopback; snapshots go over OTLP to {destination}")
    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="otlp", export_interval_ms=200)

    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    try:
        with (
            HttpFaultServer(middlebox_idle_s=MIDDLEBOX_IDLE_S) as middlebox,
            H2OnlyResetServer(server_context) as h2only,
            BlackHoleDNS() as dns,
        ):

            async def all_traps() -> None:
                await asyncio.gather(
                    _keepalive_trap(middlebox.url("").rstrip("/"), say),
                    _alpn_trap(h2only.url("").rstrip("/"), trust, say),
                    _dns_trap(dns.nameserver, say),
                )

            asyncio.run(_with_progress(all_traps(), say, started))
        captured = seedance_otel.stats()["captured"]
        if not seedance_otel.flush(10):
            say("  (some snapshots were not shipped in time)")
        snapshots: list[ResetContextSnapshot]
        if receiver is not None:
            receiver.wait_for_snapshots(captured, 10)
            snapshots = [item.snapshot for item in receiver.snapshots]
        else:
            snapshots = seedance_otel.snapshots()
        peer_stats = seedance_otel.peer_stats()
    finally:
        seedance_otel.uninstrument()
        if receiver is not None:
            receiver.stop()

    say("")
    findings = diagnose(snapshots, peer_stats=peer_stats)
    say(render_findings(findings, source="the demo", snapshots=len(snapshots)).rstrip("\n"))
    say("")
    codes = [finding.code for finding in findings]
    all_found = True
    for trap, matches in TRAPS.items():
        found = any(matches(code) for code in codes)
        all_found &= found
        say(f"  [{'found' if found else 'MISSED'}] {trap}")
    say(f"seedance-otel demo: done in {time.monotonic() - started:.1f} s")
    return 0 if all_found else 1
