"""aiohttp faults during connect and TLS carry the socket that was actually tried.

aiohttp closes the sockets of a failed connect before its exception reaches
any hook; the snapshot must still say which peer address and port were tried,
from which local port (the server sees it too), with which socket cookie, and,
when the name had several addresses, all of them in order.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest

import seedance_otel
from seedance_otel import FaultKind
from seedance_otel.demo.faultservers import LoopbackServer

from faultservers import AlpnRefusingServer, closed_port, rst_close

aiohttp = pytest.importorskip("aiohttp")
from aiohttp.abc import AbstractResolver, ResolveResult  # noqa: E402


class PortRecordingAlpnServer(AlpnRefusingServer):
    """Refuses ALPN with alert 120, and remembers each client's source port."""

    def __init__(self, cert_pem_path: str) -> None:
        super().__init__(cert_pem_path)
        self.client_ports: list[int] = []

    def handle(self, raw: socket.socket) -> None:
        self.client_ports.append(raw.getpeername()[1])
        super().handle(raw)


class RstOnHelloServer(LoopbackServer):
    """Reads the client's TLS hello, then resets the connection; remembers source ports."""

    scheme = "https"

    def __init__(self) -> None:
        super().__init__()
        self.client_ports: list[int] = []

    def serve(self, raw: socket.socket, index: int) -> None:
        self.client_ports.append(raw.getpeername()[1])
        raw.settimeout(5)
        raw.recv(4096)
        rst_close(raw)


class RstAfterRequestServer(LoopbackServer):
    """Reads the request, then resets the connection (the base class keeps the
    clients' source ports)."""

    def serve(self, raw: socket.socket, index: int) -> None:
        raw.settimeout(5)
        raw.recv(4096)
        rst_close(raw)


class TwoAddresses(AbstractResolver):
    """A name behind two loopback addresses, in this order (a real resolver's answer)."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in self.addresses
        ]

    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def cert_pem(ca, tmp_path_factory):
    cert = ca.issue_cert("127.0.0.1", "localhost", "two.test")
    path = tmp_path_factory.mktemp("tls") / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def http11_only_context(ca) -> ssl.SSLContext:
    """Offers http/1.1 alone: the ALPN-refusing server answers with alert 120."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["http/1.1"])
    return context


def fetch(
    url: str, ssl_context: Any, resolver: Any = None, method: str = "GET"
) -> BaseException | None:
    async def main() -> BaseException | None:
        connector = aiohttp.TCPConnector(ssl=ssl_context, resolver=resolver)
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                timeout = aiohttp.ClientTimeout(total=10)
                async with session.request(method, url, timeout=timeout) as resp:
                    await resp.read()
            except Exception as exc:
                return exc
        return None

    return asyncio.run(main())


def the_snapshot() -> seedance_otel.ResetContextSnapshot:
    [snap] = [s for s in seedance_otel.snapshots() if s.library == "aiohttp"]
    return snap


def test_tls_alert_carries_the_peer_and_local_port(instrumented, cert_pem, http11_only_context):
    with PortRecordingAlpnServer(cert_pem) as server:
        exc = fetch(server.url("/"), http11_only_context)
        client_ports = list(server.client_ports)
    assert isinstance(exc, aiohttp.ClientConnectorError)
    snap = the_snapshot()
    assert (snap.kind, snap.phase) == (FaultKind.ALPN_MISMATCH, "tls")
    assert snap.peer_address == "127.0.0.1" and snap.peer_port == server.port
    assert snap.local_port is not None and snap.local_port in client_ports
    assert snap.socket_cookie is not None and snap.socket_cookie > 0
    assert snap.peer_addresses_tried is None  # one address: peer_address says it


def test_rst_in_the_tls_handshake_carries_the_peer_and_local_port(
    instrumented, http11_only_context
):
    with RstOnHelloServer() as server:
        exc = fetch(server.url("/"), http11_only_context)
        client_ports = list(server.client_ports)
    assert isinstance(exc, aiohttp.ClientConnectorError)
    snap = the_snapshot()
    assert snap.kind is FaultKind.CONNECTION_RESET and snap.phase in ("connect", "tls")
    assert snap.peer_address == "127.0.0.1" and snap.peer_port == server.port
    assert snap.local_port is not None and snap.local_port in client_ports
    assert snap.socket_cookie is not None


def test_refused_connect_carries_the_peer_tried(instrumented):
    port = closed_port()
    exc = fetch(f"http://127.0.0.1:{port}/", None)
    assert isinstance(exc, aiohttp.ClientConnectorError)
    snap = the_snapshot()
    assert snap.kind is FaultKind.CONNECT_REFUSED
    assert snap.peer_address == "127.0.0.1" and snap.peer_port == port
    assert snap.local_port is not None and snap.local_port > 0
    assert snap.socket_cookie is not None


@pytest.fixture(params=["sock_connect", "generic_sock_connect"])
def sock_connect_hook(request, monkeypatch):
    """Instrumented with the loop's ``sock_connect`` hook for its signature,
    and with the generic one a loop with another signature gets."""
    from asyncio.selector_events import BaseSelectorEventLoop

    from seedance_otel.instrumentation import connect_attempts

    if request.param == "generic_sock_connect":
        monkeypatch.setattr(connect_attempts, "signature_is", lambda *a, **k: False)
    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="none", strict=True)
    try:
        hook = BaseSelectorEventLoop.sock_connect.__code__
        assert (hook.co_name, hook.co_filename) == (request.param, connect_attempts.__file__)
        yield
    finally:
        seedance_otel.uninstrument()
    # The loop's own method is back (the hook carries its name and module).
    assert BaseSelectorEventLoop.sock_connect.__code__.co_filename.endswith("selector_events.py")


def test_a_name_with_two_addresses_lists_both_in_order(
    sock_connect_hook, cert_pem, http11_only_context
):
    """::1 refuses (the server listens on 127.0.0.1 only); 127.0.0.1 answers
    with alert 120. Every attempt is noted, whichever ``sock_connect`` hook."""
    with PortRecordingAlpnServer(cert_pem) as server:
        resolver = TwoAddresses(["::1", "127.0.0.1"])
        exc = fetch(f"https://two.test:{server.port}/", http11_only_context, resolver)
        client_ports = list(server.client_ports)
    assert isinstance(exc, aiohttp.ClientConnectorError)
    snap = the_snapshot()
    assert snap.kind is FaultKind.ALPN_MISMATCH
    assert snap.server_address == "two.test"
    assert snap.peer_addresses_tried == ("::1", "127.0.0.1")
    assert snap.peer_address == "127.0.0.1" and snap.peer_port == server.port
    assert snap.local_port in client_ports


@pytest.mark.parametrize(
    ("addresses", "reads_again"),
    [(None, False), (["::1", "127.0.0.1"], True)],
    ids=["one-attempt", "two-attempts"],
)
def test_a_new_connection_has_its_own_socket_facts(
    instrumented, monkeypatch, addresses, reads_again
):
    """A reset on a new connection names the socket it happened on. After one
    connect attempt, the history takes what the attempt read as it ended
    instead of asking the socket again; after two (::1 refused first), it
    does not know which won and asks the socket."""
    from seedance_otel._connection import socket_facts

    reads: list[object] = []

    def counting(*args: Any) -> Any:
        reads.append(args)
        return socket_facts(*args)

    monkeypatch.setattr("seedance_otel.instrumentation.aiohttp_client.socket_facts", counting)
    with RstAfterRequestServer() as server:
        # POST: aiohttp would retry a GET on a second connection.
        if addresses is None:
            exc = fetch(server.url("/"), None, method="POST")
        else:
            url = f"http://two.test:{server.port}/"
            exc = fetch(url, None, TwoAddresses(addresses), method="POST")
        client_ports = list(server.client_ports)
    assert isinstance(exc, aiohttp.ClientOSError)
    snap = the_snapshot()
    assert (snap.kind, snap.connection_reused) == (FaultKind.CONNECTION_RESET, False)
    assert snap.peer_address == "127.0.0.1" and snap.peer_port == server.port
    assert client_ports == [snap.local_port]
    assert snap.socket_cookie is not None and snap.socket_cookie > 0
    assert bool(reads) is reads_again
