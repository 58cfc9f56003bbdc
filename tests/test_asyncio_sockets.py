"""Plain asyncio connections (the path of database drivers, Redis clients, websockets)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import TracerProvider

import seedance_otel
from seedance_otel import FaultKind

from clients import run_steps
from faultservers import Action, HttpFaultServer

REQUEST = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"


def asyncio_snaps() -> list[seedance_otel.ResetContextSnapshot]:
    return [s for s in seedance_otel.snapshots() if s.library == "asyncio"]


async def _request_and_read(port: int) -> tuple[bytes, BaseException | None, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(REQUEST)
    try:
        data = await asyncio.wait_for(reader.read(1024), 5)
        return data, None, local_port
    except Exception as exc:
        return b"", exc, local_port
    finally:
        writer.close()


def test_rst_instead_of_an_answer(instrumented):
    tracer = TracerProvider().get_tracer("test")
    with HttpFaultServer(lambda info: Action.RST) as server:

        async def main() -> tuple[bytes, BaseException | None, int, str]:
            with tracer.start_as_current_span("redis-call") as span:
                data, exc, local_port = await _request_and_read(server.port)
            return data, exc, local_port, f"{span.get_span_context().trace_id:032x}"

        data, exc, local_port, trace_id = asyncio.run(main())
    assert isinstance(exc, ConnectionResetError)
    [snap] = asyncio_snaps()
    assert (snap.kind, snap.phase) == (FaultKind.CONNECTION_RESET, "request")
    assert snap.errno == 104
    assert snap.peer_address == "127.0.0.1" and snap.peer_port == server.port
    assert snap.local_port == local_port
    assert snap.trace_id == trace_id
    # The first exchange on a new connection: no reuse, nothing served yet.
    assert snap.connection_reused is False and snap.connection_requests == 0
    assert snap.client_library == "test_asyncio_sockets"  # the code that connected
    assert snap.connection_age_s is not None and snap.connection_age_s >= 0


def test_long_lived_connection_reset_while_idle(instrumented):
    """A websocket-like connection: one exchange, then idle; the peer resets it."""
    tracer = TracerProvider().get_tracer("test")
    with HttpFaultServer(idle_close_s=0.4, idle_close_rst=True) as server:

        async def main() -> tuple[BaseException | None, str]:
            with tracer.start_as_current_span("subscribe") as span:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                trace_id = f"{span.get_span_context().trace_id:032x}"
            # The span has ended; the connection lives on.
            writer.write(REQUEST)
            await reader.readuntil(b"ok")
            try:
                await asyncio.wait_for(reader.read(1024), 5)
                return None, trace_id
            except Exception as exc:
                return exc, trace_id
            finally:
                writer.close()

        exc, trace_id = asyncio.run(main())
    assert isinstance(exc, ConnectionResetError)
    [snap] = asyncio_snaps()
    assert (snap.kind, snap.phase) == (FaultKind.CONNECTION_RESET, "idle")
    assert snap.connection_idle_s is not None and 0.35 <= snap.connection_idle_s <= 0.8
    assert snap.trace_id == trace_id  # the context that made the connection


def test_peer_fin_while_idle_is_an_idle_close(instrumented):
    with HttpFaultServer(idle_close_s=1.2) as server:

        async def main() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(REQUEST)
            await reader.readuntil(b"ok")
            rest = await asyncio.wait_for(reader.read(), 5)  # EOF
            writer.close()
            return rest

        assert asyncio.run(main()) == b""
    [snap] = asyncio_snaps()
    assert (snap.kind, snap.phase) == (FaultKind.PEER_CLOSED_IDLE, "idle")
    assert snap.connection_idle_s is not None and 1.15 <= snap.connection_idle_s <= 1.6


def test_a_fin_right_after_the_answer_is_the_protocol_not_an_idle_timeout(instrumented):
    """HTTP/1.0-style: the server answers, then closes. Not an idle close."""
    with HttpFaultServer(lambda info: Action.RESPOND_CLOSE) as server:

        async def main() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(REQUEST)
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data

        assert asyncio.run(main()).endswith(b"ok")
    assert asyncio_snaps() == []


def test_watch_wrappers_are_removed_when_the_connection_ends(instrumented):
    with HttpFaultServer(lambda info: Action.RST) as server:

        async def main() -> tuple[object, object]:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            transport, protocol = writer.transport, writer.transport.get_protocol()
            assert "write" in vars(transport) and "connection_lost" in vars(protocol)
            writer.write(REQUEST)
            try:
                await asyncio.wait_for(reader.read(1024), 5)
            except ConnectionResetError:
                pass
            writer.close()
            return transport, protocol

        transport, protocol = asyncio.run(main())
    assert "write" not in vars(transport) and "connection_lost" not in vars(protocol)
    assert len(asyncio_snaps()) == 1


def test_peer_fin_before_the_answer_is_a_reset(instrumented):
    with HttpFaultServer(lambda info: Action.FIN) as server:
        data, exc, _ = asyncio.run(_request_and_read(server.port))
    assert data == b"" and exc is None  # StreamReader reports EOF as b""
    [snap] = asyncio_snaps()
    assert (snap.kind, snap.phase) == (FaultKind.CONNECTION_RESET, "request")
    assert snap.error_type == "EOF" and snap.errno is None


def test_our_own_close_records_nothing(instrumented):
    with HttpFaultServer() as server:

        async def main() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(REQUEST)
            await reader.readuntil(b"ok")
            writer.close()
            await writer.wait_closed()

        asyncio.run(main())
    assert seedance_otel.snapshots() == []


@pytest.mark.parametrize("client", ["aiohttp", "httpx-async"])
def test_library_faults_are_not_recorded_twice(instrumented, client):
    with HttpFaultServer(lambda info: Action.RST) as server:
        run_steps(client, [("POST", server.url("/x"))])
    snaps = seedance_otel.snapshots()
    assert len(snaps) == 1
    assert snaps[0].library != "asyncio"


def test_a_write_after_an_idle_fin_is_a_stale_reuse_with_that_writes_trace(instrumented):
    """The FIN arrives while the connection sits idle; the next request meets it."""
    tracer = TracerProvider().get_tracer("test")
    with HttpFaultServer(idle_close_s=0.5) as server:

        async def main() -> tuple[bytes, str, str]:
            with tracer.start_as_current_span("connect") as connect_span:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(REQUEST)
                await reader.readuntil(b"ok")
            await asyncio.sleep(0.9)  # the server's FIN comes in at 0.5 s
            with tracer.start_as_current_span("second") as span:
                writer.write(REQUEST)
                rest = await asyncio.wait_for(reader.read(1024), 5)
            writer.close()
            return (
                rest,
                f"{connect_span.get_span_context().trace_id:032x}",
                (f"{span.get_span_context().trace_id:032x}"),
            )

        rest, connect_trace, second_trace = asyncio.run(main())
    assert rest == b""
    [snap] = asyncio_snaps()
    assert (snap.kind, snap.phase) == (FaultKind.CONNECTION_RESET, "request")
    assert snap.connection_reused is True and snap.connection_requests == 1
    assert snap.connection_idle_s is not None and 0.85 <= snap.connection_idle_s <= 1.5
    assert snap.trace_id == second_trace != connect_trace
    assert "before the write that met it" in snap.error_message


def test_each_exchange_carries_its_own_trace_and_idle_time(instrumented):
    """The RST hits the third request: its span and the idle time before it."""
    tracer = TracerProvider().get_tracer("test")
    answers = iter([Action.RESPOND, Action.RESPOND, Action.RST])
    with HttpFaultServer(lambda info: next(answers)) as server:

        async def main() -> list[str]:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            traces = []
            try:
                for index in range(3):
                    await asyncio.sleep(0.3 if index == 2 else 0.0)
                    with tracer.start_as_current_span(f"request-{index}") as span:
                        traces.append(f"{span.get_span_context().trace_id:032x}")
                        writer.write(REQUEST)
                        try:
                            await asyncio.wait_for(reader.readuntil(b"ok"), 5)
                        except (ConnectionResetError, asyncio.IncompleteReadError):
                            pass
            finally:
                writer.close()
            return traces

        traces = asyncio.run(main())
    [snap] = asyncio_snaps()
    assert (snap.kind, snap.phase) == (FaultKind.CONNECTION_RESET, "request")
    assert snap.trace_id == traces[2]
    assert snap.connection_reused is True and snap.connection_requests == 2
    assert snap.connection_idle_s is not None and 0.25 <= snap.connection_idle_s <= 1.0
