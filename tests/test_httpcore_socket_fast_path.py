"""The httpcore hooks read a new connection's socket without anyio's attribute table.

``_raw_socket`` relies on anyio's private stream layout and falls back to
``get_extra_info`` when it differs: correct either way, but the fallback is
the costliest step of a new connection. This fails when the layout moves, so
the fast path cannot disappear unnoticed.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
import httpx2
import pytest

from seedance_otel.instrumentation._httpcore_hooks import _raw_socket

from faultservers import HttpFaultServer


def _network_stream(client: Any) -> Any:
    [connection] = client._transport._pool.connections
    return connection._connection._network_stream


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpcore", "httpcore2"])
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_the_socket_is_read_from_anyio_directly(
    module: Any, tls: bool, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    with HttpFaultServer(ssl_context=server_ssl_context if tls else None) as server:

        async def main() -> None:
            async with module.AsyncClient(verify=client_ssl_context) as client:
                response = await client.get(server.url("/"))
                assert response.status_code == 200
                stream = _network_stream(client)
                sock = _raw_socket(stream)
                # The very socket object the slow path would have returned.
                assert sock is not None and sock is stream.get_extra_info("socket")
                assert sock.getpeername()[1] == server.port

        asyncio.run(main())


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpcore", "httpcore2"])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_the_applications_trace_extension_sees_every_connect_event(
    instrumented: None,
    module: Any,
    tls: bool,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    # To an https origin our connect observer sits in front of the
    # application's trace callback and passes every event on; to a plain-http
    # origin it is not installed at all. Either way the application sees the
    # same events and the connection is still recorded with its socket.
    import seedance_otel

    seen: list[str] = []

    async def trace(name: str, info: dict[str, Any]) -> None:
        seen.append(name)

    with HttpFaultServer(ssl_context=server_ssl_context if tls else None) as server:

        async def main() -> None:
            async with module.AsyncClient(verify=client_ssl_context) as client:
                response = await client.get(server.url("/"), extensions={"trace": trace})
                assert response.status_code == 200
                history = _network_stream(client)._seedance_history
                assert history is not None and history.socket.local_port is not None

        asyncio.run(main())
    expected = ["connection.connect_tcp.started", "connection.connect_tcp.complete"]
    if tls:
        expected += ["connection.start_tls.started", "connection.start_tls.complete"]
    assert seen[: len(expected)] == expected
    assert "http11.receive_response_headers.complete" in seen
    assert seedance_otel.snapshots() == []
