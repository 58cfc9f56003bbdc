"""ALPN mismatches for real: a server that requires h2 and clients that do not offer it."""

from __future__ import annotations

import asyncio
import ssl

import pytest

import seedance_otel
from seedance_otel import FaultKind

from clients import run_steps
from faultservers import AlpnRefusingServer, H2OnlyResetServer


@pytest.fixture(scope="module")
def cert_pem(ca, tmp_path_factory):
    cert = ca.issue_cert("127.0.0.1", "localhost")
    path = tmp_path_factory.mktemp("tls") / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def refusing_server(cert_pem):
    with AlpnRefusingServer(cert_pem) as server:
        yield server


def only(kind: FaultKind) -> list[seedance_otel.ResetContextSnapshot]:
    return [s for s in seedance_otel.snapshots() if s.kind is kind]


@pytest.mark.parametrize("client", ["httpx-async", "httpx-sync"])
def test_alert_120_httpx(instrumented, refusing_server, client_ssl_context, client):
    [result] = run_steps(
        client, [("GET", refusing_server.url("/"))], ssl_context=client_ssl_context
    )
    assert "no application protocol" in str(result)
    [snap] = only(FaultKind.ALPN_MISMATCH)
    assert snap.library == "httpx"
    assert snap.phase == "tls"
    assert snap.alpn_offered == ("http/1.1",)
    assert snap.alpn_negotiated is None
    assert snap.peer_address == "127.0.0.1" and snap.peer_port == refusing_server.port
    assert refusing_server.offered[-1] == [b"http/1.1"]


def test_alert_120_aiohttp_default_context(instrumented, refusing_server):
    """aiohttp's own context (here ssl=False: unverified) offers http/1.1."""
    [result] = run_steps("aiohttp", [("GET", refusing_server.url("/"))], ssl_context=False)  # type: ignore[arg-type]
    assert isinstance(result, Exception)
    [snap] = only(FaultKind.ALPN_MISMATCH)
    assert snap.library == "aiohttp"
    assert snap.phase == "tls"
    assert snap.alpn_offered == ("http/1.1",)
    assert snap.error_type == "aiohttp.client_exceptions.ClientConnectorSSLError"


def test_user_context_without_alpn_offers_nothing(
    instrumented, refusing_server, client_ssl_context
):
    """The third trap: a user SSLContext on which set_alpn_protocols was never called.

    The server never sees an ALPN list, speaks h2 anyway, and the client's
    HTTP/1.1 parser chokes on the binary frame.
    """
    [result] = run_steps(
        "aiohttp", [("GET", refusing_server.url("/"))], ssl_context=client_ssl_context
    )
    assert isinstance(result, Exception)
    assert refusing_server.offered == []
    [snap] = only(FaultKind.ALPN_MISMATCH)
    assert snap.alpn_offered == ()
    assert snap.alpn_negotiated is None
    assert snap.tls_version in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("client", ["httpx-async", "httpx-sync"])
def test_http2_clients_succeed(instrumented, refusing_server, ca, client):
    context = ssl.create_default_context()
    ca.configure_trust(context)
    results = run_steps(
        client, [("GET", refusing_server.url("/"))], ssl_context=context, http2=True
    )
    assert results == [200]
    assert refusing_server.offered[-1] == [b"http/1.1", b"h2"]
    assert seedance_otel.snapshots() == []


@pytest.mark.parametrize("client", ["aiohttp", "httpx-async", "httpx-sync"])
def test_reset_after_handshake_without_alpn_carries_alpn_fields(
    instrumented, server_ssl_context_h2only, client_ssl_context, client
):
    with H2OnlyResetServer(server_ssl_context_h2only) as server:
        [result] = run_steps(client, [("POST", server.url("/"))], ssl_context=client_ssl_context)
        assert isinstance(result, Exception)
        [snap] = only(FaultKind.CONNECTION_RESET)
        assert snap.connection_reused is False
        assert snap.alpn_negotiated is None
        assert snap.alpn_offered == (() if client == "aiohttp" else ("http/1.1",))
        assert snap.tls_version is not None
        if client != "aiohttp":  # with h2 offered, the same server answers
            assert run_steps(
                client, [("GET", server.url("/"))], ssl_context=client_ssl_context, http2=True
            ) == [200]


@pytest.fixture
def server_ssl_context_h2only(ca):
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return context


def test_asyncio_create_connection_alert_120(instrumented, refusing_server, client_ssl_context):
    client_ssl_context.set_alpn_protocols(["http/1.1"])

    async def main() -> BaseException | None:
        try:
            await asyncio.open_connection(
                "127.0.0.1", refusing_server.port, ssl=client_ssl_context
            )
        except Exception as exc:
            return exc
        return None

    exc = asyncio.run(main())
    assert isinstance(exc, ssl.SSLError)
    [snap] = only(FaultKind.ALPN_MISMATCH)
    assert snap.library == "asyncio"
    assert snap.alpn_offered == ("http/1.1",)
    assert snap.server_port == refusing_server.port


def test_asyncio_start_tls_alert_120(instrumented, refusing_server, client_ssl_context):
    client_ssl_context.set_alpn_protocols(["spdy/3"])

    async def main() -> BaseException | None:
        reader, writer = await asyncio.open_connection("127.0.0.1", refusing_server.port)
        try:
            if hasattr(writer, "start_tls"):
                await writer.start_tls(client_ssl_context, server_hostname="127.0.0.1")
            else:  # Python 3.10: the loop's own, which StreamWriter.start_tls (3.11+) calls
                transport = writer.transport
                await asyncio.get_running_loop().start_tls(
                    transport,
                    transport.get_protocol(),
                    client_ssl_context,
                    server_hostname="127.0.0.1",
                )
        except Exception as exc:
            return exc
        finally:
            writer.close()
        return None

    exc = asyncio.run(main())
    assert isinstance(exc, ssl.SSLError)
    [snap] = only(FaultKind.ALPN_MISMATCH)
    assert snap.library == "asyncio"
    assert snap.phase == "tls"
    assert snap.alpn_offered == ("spdy/3",)
