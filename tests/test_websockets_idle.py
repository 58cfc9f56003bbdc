"""A websockets client against a websockets server that closes idle connections.

Two ways a peer ends an idle websocket: dropping the TCP connection (a proxy
or load balancer's idle timeout) or a proper close handshake (its close
frame, the client's, then its FIN). Both are the peer closing an idle
connection, measured from the client's last activity; neither is a reset of
a request, and diagnosis gives websockets' own fix.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import seedance_otel
from seedance_otel import FaultKind

ws_server = pytest.importorskip("websockets.asyncio.server")
ws_client = pytest.importorskip("websockets.asyncio.client")
ws_exceptions = pytest.importorskip("websockets.exceptions")

SERVER_IDLE_S = 1.2


def idle_closing_handler(drop: bool) -> Any:
    """Echo; after ``SERVER_IDLE_S`` without a message, drop the TCP connection
    (``drop``) or close with a close handshake."""

    async def handler(websocket: Any) -> None:
        while True:
            try:
                message = await asyncio.wait_for(websocket.recv(), SERVER_IDLE_S)
            except TimeoutError:
                if drop:
                    websocket.transport.close()
                else:
                    await websocket.close()
                return
            await websocket.send(message)

    return handler


def talk_then_idle(drop: bool) -> list[Any]:
    async def main() -> list[Any]:
        results: list[Any] = []
        async with ws_server.serve(idle_closing_handler(drop), "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with ws_client.connect(f"ws://127.0.0.1:{port}", ping_interval=None) as ws:
                await ws.send("hello")
                results.append(await ws.recv())
                await asyncio.sleep(SERVER_IDLE_S + 0.8)
                try:
                    await ws.send("again")
                    results.append(await ws.recv())
                except ws_exceptions.ConnectionClosed as exc:
                    results.append(exc)
        return results

    return asyncio.run(main())


@pytest.mark.parametrize("drop", [True, False], ids=["tcp-drop", "close-handshake"])
def test_idle_close_by_the_server_is_measured_not_a_reset(instrumented, drop):
    results = talk_then_idle(drop)
    assert results[0] == "hello"
    assert isinstance(results[1], ws_exceptions.ConnectionClosed)
    snaps = [s for s in seedance_otel.snapshots() if s.library == "asyncio"]
    assert [s.kind for s in snaps] == [FaultKind.PEER_CLOSED_IDLE]
    [snap] = snaps
    assert snap.phase == "idle"
    assert snap.client_library == "websockets"
    assert snap.connection_reused is True  # the handshake and the echo were served
    assert snap.connection_idle_s is not None
    # Measured from our last read: the server's timer started as it sent that.
    assert 0.75 * SERVER_IDLE_S <= snap.connection_idle_s <= SERVER_IDLE_S + 0.6


def test_diagnosis_gives_websockets_ping_interval(instrumented):
    talk_then_idle(drop=True)
    [stale] = [f for f in seedance_otel.diagnose() if f.code == "stale_keepalive"]
    assert stale.fix.startswith("websockets: ")
    assert "ping_interval=" in stale.fix
    assert "httpx" not in stale.fix and "aiohttp" not in stale.fix
    estimate = stale.params["peer_idle_timeout_s"]
    assert estimate is not None and 0.75 * SERVER_IDLE_S <= estimate <= SERVER_IDLE_S + 0.6
