"""httpx2 (httpcore2) is recorded exactly as httpx is: the same hooks, its own library.

The OpenAI, Anthropic and Google GenAI SDKs make their requests with httpx2.
The stale-reuse and pool-timeout tests of ``test_resets`` / ``test_fault_kinds``
run on httpx2 too; these drive httpx2 directly against the same fault servers
for the rest (response phase, connect, TLS, idle close, trace, retries seen,
the two packages at once, uninstall) and check its diagnosis texts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpcore2
import httpx
import httpx2
import pytest
from opentelemetry.sdk.trace import TracerProvider

import seedance_otel
from seedance_otel import FaultKind

from clients import HTTPX2_CLIENTS, library_of, run_steps
from faultservers import Action, HttpFaultServer, closed_port

IDLE_S = 0.6
MIDDLEBOX_S = 0.3
TOLERANCE_S = 0.25


def snaps_of(library: str) -> list[seedance_otel.ResetContextSnapshot]:
    return [s for s in seedance_otel.snapshots() if s.library == library]


@pytest.mark.parametrize("client", HTTPX2_CLIENTS)
def test_rst_mid_body_is_response_phase(instrumented, client):
    with HttpFaultServer(lambda info: Action.RST_MID_BODY) as server:
        [result] = run_steps(client, [("POST", server.url("/body"))])
    assert isinstance(result, httpx2.HTTPError)
    [snap] = snaps_of("httpx2")
    assert (snap.kind, snap.phase) == (FaultKind.CONNECTION_RESET, "response")
    assert snap.connection_reused is False and snap.connection_idle_s is None


@pytest.mark.parametrize("client", HTTPX2_CLIENTS)
def test_connect_refused(instrumented, client):
    port = closed_port()
    [result] = run_steps(client, [("GET", f"http://127.0.0.1:{port}/")])
    assert isinstance(result, httpx2.ConnectError)
    [snap] = snaps_of("httpx2")
    assert (snap.kind, snap.phase, snap.errno) == (FaultKind.CONNECT_REFUSED, "connect", 111)
    assert snap.server_port == port
    assert not snaps_of("asyncio")


@pytest.mark.parametrize("client", HTTPX2_CLIENTS)
def test_untrusted_certificate_is_a_tls_error(instrumented, server_ssl_context, client):
    import ssl

    untrusting = ssl.create_default_context()  # trusts no test CA
    with HttpFaultServer(ssl_context=server_ssl_context) as server:
        [result] = run_steps(client, [("GET", server.url("/"))], ssl_context=untrusting)
    assert isinstance(result, httpx2.ConnectError)
    [snap] = snaps_of("httpx2")
    assert (snap.kind, snap.phase) == (FaultKind.TLS_ERROR, "tls")
    assert snap.alpn_offered == ("http/1.1",)
    assert snap.peer_port == server.port  # read from the TCP stream before TLS failed


@pytest.mark.parametrize("client", HTTPX2_CLIENTS)
def test_idle_close_found_at_checkout(instrumented, client):
    """The server closes an idle keep-alive connection: an upper bound, as for httpx."""
    with HttpFaultServer(idle_close_s=0.2) as server:
        results = run_steps(
            client,
            [("GET", server.url("/a")), ("sleep", IDLE_S), ("GET", server.url("/b"))],
        )
    assert results == [200, 200]
    [snap] = snaps_of("httpx2")
    assert snap.kind is FaultKind.PEER_CLOSED_IDLE and snap.phase == "idle"
    assert snap.connection_idle_s is not None and snap.connection_idle_s >= IDLE_S - 0.05
    assert snap.trace_id is None  # nobody's request: an idle connection


def test_trace_ids_are_the_requests_span(instrumented):
    tracer = TracerProvider().get_tracer("test")
    with HttpFaultServer(middlebox_idle_s=MIDDLEBOX_S) as server:

        async def main() -> tuple[str, str]:
            async with httpx2.AsyncClient() as client:
                with tracer.start_as_current_span("first"):
                    await client.get(server.url("/a"))
                await asyncio.sleep(IDLE_S)
                with tracer.start_as_current_span("second") as span:
                    with pytest.raises(httpx2.HTTPError):
                        await client.post(server.url("/b"))
                    context = span.get_span_context()
            return format(context.trace_id, "032x"), format(context.span_id, "016x")

        trace_id, span_id = asyncio.run(main())
    [snap] = snaps_of("httpx2")
    assert (snap.trace_id, snap.span_id) == (trace_id, span_id)


def test_httpx_and_httpx2_at_once(instrumented):
    """Both packages hooked in one process: each fault once, under its own library."""
    with HttpFaultServer(middlebox_idle_s=MIDDLEBOX_S) as server:

        async def main() -> tuple[object, object]:
            async with httpx.AsyncClient() as one, httpx2.AsyncClient() as two:
                await asyncio.gather(one.get(server.url("/1")), two.get(server.url("/2")))
                await asyncio.sleep(IDLE_S)
                return await asyncio.gather(
                    one.post(server.url("/1")), two.post(server.url("/2")), return_exceptions=True
                )

        results = asyncio.run(main())
    assert all(isinstance(r, Exception) for r in results), results
    [old] = snaps_of("httpx")
    [new] = snaps_of("httpx2")
    assert old.error_type.startswith("httpcore.") and new.error_type.startswith("httpcore2.")
    assert old.local_port != new.local_port
    assert old.connection_reused is new.connection_reused is True
    assert len(seedance_otel.snapshots()) == 2  # no asyncio-level duplicate


def test_uninstrument_restores_httpcore2():
    originals = {
        cls: dict(vars(cls))
        for cls in (
            httpcore2.AsyncHTTP11Connection,
            httpcore2.HTTP11Connection,
            httpcore2.AsyncHTTPConnection,
        )
    }
    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="none", strict=True)
    assert (
        httpcore2.AsyncHTTP11Connection.handle_async_request
        is not originals[httpcore2.AsyncHTTP11Connection]["handle_async_request"]
    )
    seedance_otel.uninstrument()
    for cls, before in originals.items():
        assert dict(vars(cls)) == before


def test_sync_client_socket_is_our_peer(instrumented):
    """The sync backend's socket: addresses and the SO_COOKIE come from it."""
    with HttpFaultServer(middlebox_idle_s=MIDDLEBOX_S) as server:
        run_steps(
            "httpx2-sync",
            [("GET", server.url("/a")), ("sleep", IDLE_S), ("GET", server.url("/b"))],
        )
        ports = list(server.client_ports)
    [snap] = snaps_of(library_of("httpx2-sync"))
    assert snap.local_port == ports[0]
    assert isinstance(snap.socket_cookie, int) and snap.socket_cookie > 0


def _retry_once_in(tracer, server, same_span: bool) -> dict[str, Any]:
    """A stale reset, then the request again on a new connection (in the same span or not)."""

    async def main() -> None:
        async with httpx2.AsyncClient() as client:
            await client.get(server.url("/a"))
            await asyncio.sleep(IDLE_S)
            with tracer.start_as_current_span("call"):
                with pytest.raises(httpx2.HTTPError):
                    await client.post(server.url("/b"))
                if same_span:
                    await client.post(server.url("/b"))
            if not same_span:
                with tracer.start_as_current_span("another call"):
                    await client.post(server.url("/b"))

    asyncio.run(main())
    return seedance_otel.peer_stats()[("127.0.0.1", server.port)]


@pytest.mark.parametrize("same_span", [True, False])
def test_a_retry_in_the_same_span_is_counted(instrumented, same_span):
    tracer = TracerProvider().get_tracer("test")
    with HttpFaultServer(middlebox_idle_s=MIDDLEBOX_S) as server:
        stats = _retry_once_in(tracer, server, same_span)
    [snap] = snaps_of("httpx2")
    assert snap.connection_reused is True
    assert stats["retried_after_reset_count"] == (1 if same_span else 0)


def test_diagnosis_speaks_httpx2():
    """httpx2's own words: the SDK client's keepalive_expiry, its 5 s default."""
    from seedance_otel.diagnosis import diagnose

    from snapshot_factory import make_snapshot

    snaps = [
        make_snapshot(
            library="httpx2",
            error_type="httpcore2.ReadError",
            connection_reused=True,
            connection_idle_s=idle,
            peer_reuse_ok_max_idle_s=4.3,
            peer_reuse_ok_count=10,
        )
        for idle in (4.8, 4.85, 4.9)
    ]
    stats = {
        ("api.test", 443): {
            "reuse_ok_count": 10,
            "reuse_ok_max_idle_s": 4.3,
            "reuse_ok_recent_idle_s": [2.0, 4.3],
            "retried_after_reset_count": 3,
        }
    }
    [finding] = diagnose(snaps, peer_stats=stats)
    assert finding.code == "stale_keepalive"
    assert "httpx2's default keepalive_expiry (5 s) is just above it" in finding.summary
    assert finding.fix.startswith("httpx2: openai.AsyncOpenAI(http_client=")
    assert "keepalive_expiry=3.4" in finding.fix and "aiohttp" not in finding.fix
    assert finding.evidence["retried_by_client"] == 3


def test_stale_reuse_under_uvloop(instrumented):
    """httpx2 on a uvloop loop: the same stale reuse, with its idle time and ports."""
    uvloop = pytest.importorskip("uvloop")

    async def main(url: str) -> list[object]:
        async with httpx2.AsyncClient() as client:
            first = (await client.get(url + "/a")).status_code
            await asyncio.sleep(IDLE_S)
            try:
                await client.post(url + "/b")
            except httpx2.HTTPError as exc:
                return [first, exc]
            return [first, None]

    with HttpFaultServer(middlebox_idle_s=MIDDLEBOX_S) as server:
        results = uvloop.run(main(server.url("")))
        ports = list(server.client_ports)
    assert results[0] == 200 and isinstance(results[1], httpx2.HTTPError)
    [snap] = seedance_otel.snapshots()
    assert (snap.library, snap.kind) == ("httpx2", FaultKind.CONNECTION_RESET)
    assert snap.connection_reused is True and snap.local_port == ports[0]
    assert snap.connection_idle_s is not None
    assert IDLE_S - 0.05 <= snap.connection_idle_s <= IDLE_S + TOLERANCE_S
