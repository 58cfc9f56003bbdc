"""Every kind of the classification table, from a real fault on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
import time

import aiohttp
import httpx
import pytest

import seedance_otel
from seedance_otel import FaultKind

from clients import CLIENTS, library_of, run_steps
from faultservers import FullBacklog, HttpFaultServer, SilentServer, closed_port


def snaps_of(library: str) -> list[seedance_otel.ResetContextSnapshot]:
    return [s for s in seedance_otel.snapshots() if s.library == library]


@pytest.mark.parametrize("client", CLIENTS)
def test_connect_refused(instrumented, client):
    port = closed_port()
    [result] = run_steps(client, [("GET", f"http://127.0.0.1:{port}/")])
    assert isinstance(result, Exception)
    [snap] = snaps_of(library_of(client))
    assert snap.kind is FaultKind.CONNECT_REFUSED
    assert snap.phase == "connect"
    assert snap.errno == 111
    assert snap.server_port == port
    assert snap.dns_question is None  # an IP literal is not resolved


@pytest.mark.parametrize("client", ["httpx-async", "httpx-sync"])
def test_connect_timeout_httpx(instrumented, client):
    with FullBacklog() as backlog:
        [result] = run_steps(client, [("GET", f"http://127.0.0.1:{backlog.port}/")], timeout_s=0.5)
    assert isinstance(result, httpx.ConnectTimeout)
    [snap] = snaps_of("httpx")
    assert snap.kind is FaultKind.CONNECT_TIMEOUT
    assert snap.phase == "connect"


def test_connect_timeout_aiohttp(instrumented):
    async def main(port: int) -> BaseException | None:
        timeout = aiohttp.ClientTimeout(connect=0.5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.get(f"http://127.0.0.1:{port}/"):
                    return None
            except Exception as exc:
                return exc

    with FullBacklog() as backlog:
        exc = asyncio.run(main(backlog.port))
    assert isinstance(exc, aiohttp.ConnectionTimeoutError)
    [snap] = snaps_of("aiohttp")
    assert snap.kind is FaultKind.CONNECT_TIMEOUT
    assert snap.phase == "connect"


def test_tls_handshake_that_never_finishes_is_a_connect_timeout_in_tls(instrumented):
    """An HTTPS client against a plain server that never answers the ClientHello."""

    async def main(url: str) -> BaseException | None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.7)) as session:
            try:
                async with session.get(url):
                    return None
            except Exception as exc:
                return exc

    with SilentServer() as server:
        exc = asyncio.run(main(server.url("/").replace("http:", "https:")))
        [result] = run_steps(
            "httpx-async", [("GET", server.url("/").replace("http:", "https:"))], timeout_s=0.7
        )
    assert isinstance(exc, asyncio.TimeoutError)
    assert isinstance(result, httpx.ConnectTimeout)
    for library in ("aiohttp", "httpx"):
        [snap] = snaps_of(library)
        assert (snap.kind, snap.phase) == (FaultKind.CONNECT_TIMEOUT, "tls"), snap


@pytest.mark.parametrize("client", ["httpx-async", "httpx-sync"])
def test_read_timeout_httpx(instrumented, client):
    with SilentServer() as server:
        [result] = run_steps(client, [("GET", server.url("/slow"))], timeout_s=0.5)
    assert isinstance(result, httpx.ReadTimeout)
    [snap] = snaps_of("httpx")
    assert (snap.kind, snap.phase) == (FaultKind.READ_TIMEOUT, "request")
    assert snap.url and snap.url.endswith("/slow")


@pytest.mark.parametrize("which", ["sock_read", "total"])
def test_read_timeout_aiohttp(instrumented, which):
    async def main(url: str) -> BaseException | None:
        timeout = (
            aiohttp.ClientTimeout(sock_read=0.5)
            if which == "sock_read"
            else aiohttp.ClientTimeout(total=0.5)
        )
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.get(url):
                    return None
            except Exception as exc:
                return exc

    with SilentServer() as server:
        exc = asyncio.run(main(server.url("/slow")))
    assert isinstance(exc, asyncio.TimeoutError)
    [snap] = snaps_of("aiohttp")
    assert (snap.kind, snap.phase) == (FaultKind.READ_TIMEOUT, "request")
    assert snap.http_method == "GET" and snap.url and snap.url.endswith("/slow")


@pytest.mark.parametrize("package", ["httpx", "httpx2"])
def test_pool_timeout_httpx(instrumented, package):
    client_module = importlib.import_module(package)

    async def main(url: str) -> BaseException | None:
        limits = client_module.Limits(max_connections=1)
        timeout = client_module.Timeout(5, pool=0.5)
        async with client_module.AsyncClient(limits=limits, timeout=timeout) as client:
            holder = asyncio.ensure_future(client.get(url))
            await asyncio.sleep(0.2)
            try:
                await client.get(url)
            except Exception as exc:
                return exc
            finally:
                holder.cancel()
                await asyncio.gather(holder, return_exceptions=True)
        return None

    with SilentServer() as server:
        exc = asyncio.run(main(server.url("/held")))
    assert isinstance(exc, client_module.PoolTimeout)
    [snap] = [s for s in snaps_of(package) if s.kind is FaultKind.POOL_TIMEOUT]
    assert snap.phase == "pool"
    assert snap.server_port is not None and snap.url and snap.url.endswith("/held")


@pytest.mark.parametrize("package", ["httpx", "httpx2"])
def test_pool_timeout_httpx_sync(instrumented, package):
    """The sync pool's wait: the waiting request is found in the caller's frames
    (the hook on ``Event.wait`` is a plain function with a frame of its own)."""
    client_module = importlib.import_module(package)
    limits = client_module.Limits(max_connections=1)
    timeout = client_module.Timeout(1.5, pool=0.3)
    with SilentServer() as server, client_module.Client(limits=limits, timeout=timeout) as client:

        def hold() -> None:
            with contextlib.suppress(client_module.TimeoutException):
                client.get(server.url("/held"))  # the server never answers: a read timeout

        holder = threading.Thread(target=hold)
        holder.start()
        time.sleep(0.2)
        with pytest.raises(client_module.PoolTimeout):
            client.get(server.url("/waiting"))
        holder.join(5)
        assert not holder.is_alive()
    [snap] = [s for s in snaps_of(package) if s.kind is FaultKind.POOL_TIMEOUT]
    assert snap.phase == "pool"
    assert snap.server_port == server.port and snap.url and snap.url.endswith("/waiting")


def test_pool_timeout_aiohttp(instrumented):
    async def main(url: str) -> BaseException | None:
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(connect=0.5)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def hold() -> None:
                async with session.get(url):
                    pass

            holder = asyncio.ensure_future(hold())
            await asyncio.sleep(0.2)
            try:
                async with session.get(url):
                    return None
            except Exception as exc:
                return exc
            finally:
                holder.cancel()
                await asyncio.gather(holder, return_exceptions=True)

    with SilentServer() as server:
        exc = asyncio.run(main(server.url("/held")))
    assert isinstance(exc, aiohttp.ConnectionTimeoutError)
    [snap] = [s for s in snaps_of("aiohttp") if s.kind is FaultKind.POOL_TIMEOUT]
    assert snap.phase == "pool"


@pytest.mark.parametrize("client", CLIENTS)
def test_untrusted_certificate_is_a_tls_error(instrumented, server_ssl_context, client):
    with HttpFaultServer(ssl_context=server_ssl_context) as server:
        [result] = run_steps(client, [("GET", server.url("/"))])  # no trust in the test CA
    assert isinstance(result, Exception)
    [snap] = snaps_of(library_of(client))
    assert (snap.kind, snap.phase) == (FaultKind.TLS_ERROR, "tls")
    assert snap.errno is None  # OpenSSL's error code is not an OS errno
    assert "certificate verify failed" in snap.error_message.lower()


def test_write_timeout_httpx(instrumented):
    """A server that stops reading: the request body cannot be written in time."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    try:

        def accept() -> None:
            conn, _ = listener.accept()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            accepted.append(conn)  # never read from

        import threading

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        timeout = httpx.Timeout(5, write=0.5)
        with httpx.Client(timeout=timeout) as client:
            with pytest.raises(httpx.WriteTimeout):
                client.post(f"http://127.0.0.1:{port}/upload", content=b"x" * 64_000_000)
        thread.join(5)
    finally:
        for sock in (*accepted, listener):
            sock.close()
    [snap] = snaps_of("httpx")
    assert (snap.kind, snap.phase) == (FaultKind.WRITE_TIMEOUT, "request")


def test_name_that_does_not_exist_is_a_dns_error(instrumented):
    from faultservers import NxdomainDNS

    async def main(nameserver: str) -> BaseException | None:
        resolver = aiohttp.AsyncResolver(nameservers=[nameserver], timeout=2, tries=1)
        try:
            connector = aiohttp.TCPConnector(resolver=resolver)
            async with aiohttp.ClientSession(connector=connector) as session:
                try:
                    async with session.get("http://no-such-host.seedance.test/"):
                        return None
                except Exception as exc:
                    return exc
        finally:
            await resolver.close()

    with NxdomainDNS() as dns:
        exc = asyncio.run(main(dns.nameserver))
        assert dns.queries >= 1
    assert isinstance(exc, aiohttp.ClientConnectorDNSError)
    [snap] = snaps_of("aiohttp")
    assert (snap.kind, snap.phase) == (FaultKind.DNS_ERROR, "dns")
    assert snap.dns_question == "no-such-host.seedance.test"


def test_a_later_real_cancellation_is_not_taken_for_the_old_timeout(instrumented):
    """A worker task hits aiohttp's total timeout once, then is cancelled for real."""

    async def main(url: str) -> None:
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                with pytest.raises(asyncio.TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=0.3)):
                        pass
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)):
                    pass  # the server never answers: we cancel below

            task = asyncio.ensure_future(worker())
            await asyncio.sleep(0.8)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with SilentServer() as server:
        asyncio.run(main(server.url("/slow")))
    kinds = [s.kind for s in snaps_of("aiohttp")]
    assert kinds == [FaultKind.READ_TIMEOUT]
