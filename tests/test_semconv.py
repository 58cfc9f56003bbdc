"""What goes on the wire follows the semantic conventions: no placeholders,
errors only for real exceptions, normalised methods, one type per name, and
instruments that say what they count."""

from __future__ import annotations

import asyncio
import socket

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import TraceFlags

import seedance_otel
from seedance_otel import FaultKind, ResetContextSnapshot, instrumentor
from seedance_otel._dns import lookup_error_type
from seedance_otel._names import exception_type_name
from seedance_otel.exporting.attributes import (
    WIRE_ATTRIBUTES,
    snapshot_from_attributes,
    snapshot_to_attributes,
)
from seedance_otel.exporting.metrics import Metrics
from seedance_otel.exporting.sinks import to_log_records
from seedance_otel.exporting.span_events import span_events_wanted

from metric_points import attributes, histogram_points, metrics_by_name, number_points
from snapshot_factory import make_snapshot


def roundtrip(snapshot):
    attributes = snapshot_to_attributes(snapshot)
    return attributes, snapshot_from_attributes(
        attributes, trace_id=snapshot.trace_id, span_id=snapshot.span_id
    )


def test_a_fin_is_no_exception_and_an_idle_close_no_error():
    fin = make_snapshot(
        error_type="EOF", error_message="the peer closed the connection before answering"
    )
    attributes, back = roundtrip(fin)
    assert not {"error.type", "exception.type", "exception.message"} & set(attributes)
    assert attributes["seedance.fault.message"] == fin.error_message
    assert back == fin

    idle = make_snapshot(
        FaultKind.PEER_CLOSED_IDLE,
        phase="idle",
        error_type="ConnectionResetError",
        error_message="[Errno 104] Connection reset by peer",
    )
    attributes, back = roundtrip(idle)
    assert "error.type" not in attributes  # not an error at all
    assert attributes["exception.type"] == "ConnectionResetError"  # but a real exception
    assert back == idle


def test_real_exception_sets_error_and_exception_and_no_empty_message():
    reset = make_snapshot(error_message="")
    attributes, back = roundtrip(reset)
    assert attributes["error.type"] == attributes["exception.type"] == "httpcore.ReadError"
    assert "exception.message" not in attributes
    assert back == reset


def test_unknown_values_are_left_out_not_placeholders():
    snapshot = make_snapshot(
        server_address=None,
        server_port=None,
        alpn_offered=("http/1.1",),
        alpn_negotiated=None,
        tls_version="TLSv1.3",
    )
    attributes = snapshot_to_attributes(snapshot)
    assert "server.address" not in attributes and "server.port" not in attributes
    assert "tls.next_protocol" not in attributes
    assert "network.protocol.version" not in attributes
    assert "(none)" not in attributes.values() and "" not in attributes.values()


def test_network_protocol_version_comes_from_alpn():
    h2 = snapshot_to_attributes(make_snapshot(alpn_offered=("h2",), alpn_negotiated="h2"))
    assert h2["network.protocol.version"] == "2"
    h1 = snapshot_to_attributes(make_snapshot(alpn_negotiated="http/1.1"))
    assert h1["network.protocol.version"] == "1.1"


@pytest.mark.parametrize(
    ("method", "expected", "original"),
    [("GET", "GET", None), ("PATCH", "PATCH", None), ("PURGE", "_OTHER", "PURGE")],
)
def test_http_method_is_normalised(method, expected, original):
    snapshot = make_snapshot(http_method=method)
    attributes, back = roundtrip(snapshot)
    assert attributes["http.request.method"] == expected
    assert attributes.get("http.request.method_original") == original
    assert back.http_method == method


@pytest.mark.parametrize(
    ("sampled", "flags"),
    [(True, TraceFlags.SAMPLED), (False, TraceFlags.DEFAULT), (None, TraceFlags.DEFAULT)],
)
def test_log_record_keeps_two_clocks_and_the_span_s_own_flags(sampled, flags):
    snapshot = make_snapshot(
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        trace_sampled=sampled,
    )
    [record] = to_log_records(
        [snapshot], Resource.create({}), InstrumentationScope("seedance_otel", "test")
    )
    log = record.log_record
    assert log.timestamp == snapshot.timestamp_ns
    assert log.observed_timestamp > snapshot.timestamp_ns  # made now, from an older fault
    assert log.trace_flags == TraceFlags(flags)
    assert snapshot.trace_id is not None
    assert log.trace_id == int(snapshot.trace_id, 16)


def test_a_fault_keeps_whether_its_span_was_sampled():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    from seedance_otel._trace_context import current_trace_ids

    for sampler, expected in ((ALWAYS_ON, True), (ALWAYS_OFF, False)):
        tracer = TracerProvider(sampler=sampler).get_tracer("test")
        with tracer.start_as_current_span("call") as span:
            trace_id, span_id, sampled = current_trace_ids()
        assert (trace_id, sampled) == (f"{span.get_span_context().trace_id:032x}", expected)
    assert current_trace_ids() == (None, None, None)


@pytest.mark.parametrize(
    ("opt_in", "enabled", "wanted"),
    [
        ("", True, True),
        ("logs/dup", True, True),
        ("logs", True, False),
        ("logs", False, False),
        ("", False, False),
    ],
)
def test_span_events_follow_the_exception_signal_opt_in(opt_in, enabled, wanted):
    environ = {"OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN": opt_in} if opt_in else {}
    assert span_events_wanted(enabled, environ) is wanted


def test_one_exception_name_for_builtins_and_others():
    assert exception_type_name(TimeoutError()) == "TimeoutError"
    assert exception_type_name(socket.gaierror) == "socket.gaierror"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "host_not_found"),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), "timeout"),
        (socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure"), "no_recovery"),
        (socket.gaierror(socket.EAI_SERVICE, "Servname not supported"), "eai_service"),
        (TimeoutError(), "timeout"),
        (OSError("other"), "OSError"),
    ],
)
def test_dns_error_type_is_the_resolver_code(error, expected):
    assert lookup_error_type(error) == expected


def test_dns_error_type_looks_through_the_wrapping_exception():
    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as inner:
            raise ConnectionError("Cannot connect to host") from inner
    except ConnectionError as outer:
        assert lookup_error_type(outer) == "host_not_found"


def metric_points(reader: InMemoryMetricReader) -> dict[str, Metric]:
    return metrics_by_name(reader.get_metrics_data())


def test_alpn_counter_has_one_type_and_no_placeholders():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        from seedance_otel._ring import RingBuffer

        ring: RingBuffer[ResetContextSnapshot] = RingBuffer(4)
        metrics = Metrics(ring.accounting, capacity=4, meter_provider=provider)
        metrics.on_snapshot(
            make_snapshot(
                FaultKind.ALPN_MISMATCH,
                phase="tls",
                alpn_offered=("http/1.1",),
                alpn_negotiated=None,
                tls_version="TLSv1.3",
                server_address=None,
                server_port=None,
            )
        )
        points = metric_points(reader)
    finally:
        provider.shutdown()
    [alpn] = number_points(points["seedance.tls.alpn.mismatches"])
    assert dict(attributes(alpn)) == {
        "seedance.tls.alpn.offered": ("http/1.1",),
        "seedance.fault.kind": "alpn_mismatch",
    }
    [fault] = number_points(points["seedance.connection.faults"])
    assert "server.address" not in attributes(fault)


@pytest.fixture
def instrumented_with_metrics():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    seedance_otel.uninstrument()
    instrumentor.start({"exporter": "none", "strict": True}, {"meter_provider": provider})
    try:
        yield reader
    finally:
        seedance_otel.uninstrument()
        provider.shutdown()


def test_plain_asyncio_connections_are_not_counted_as_http(instrumented_with_metrics):
    reader = instrumented_with_metrics

    async def main() -> dict[str, Metric]:
        async def echo(reader_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader_.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"ping\n")
            assert await asyncio.wait_for(r.readline(), 5) == b"ping\n"
            while_open = metric_points(reader)
            w.close()
            await w.wait_closed()
        finally:
            server.close()
            await server.wait_closed()
        return while_open

    while_open = asyncio.run(main())
    after = metric_points(reader)
    assert "http.client.open_connections" not in while_open
    [open_point] = number_points(while_open["seedance.asyncio.open_connections"])
    assert open_point.value == 1
    assert attributes(open_point)["server.address"] == "127.0.0.1"
    assert "http.client.connection.duration" not in after
    [duration] = histogram_points(after["seedance.asyncio.connection.duration"])
    assert duration.count == 1


def test_every_attribute_sent_is_a_documented_wire_attribute():
    full = make_snapshot(
        http_method="PURGE",
        alpn_offered=("h2", "http/1.1"),
        alpn_negotiated="h2",
        tls_version="TLSv1.3",
        peer_address="127.0.0.1",
        peer_port=443,
        local_port=50000,
        socket_cookie=7,
        connection_reused=True,
        connection_idle_s=1.0,
        connection_age_s=2.0,
        connection_requests=3,
        url="https://api.test/x",
        errno=104,
        dns_question="api.test",
        dns_duration_s=0.1,
    )
    for snapshot in (full, make_snapshot(error_type="EOF", error_message="peer closed")):
        assert set(snapshot_to_attributes(snapshot)) <= WIRE_ATTRIBUTES


def test_exporting_receives_what_it_needs_instead_of_reading_the_runtime():
    """No import cycle: _runtime imports exporting.*, never the other way round."""
    import ast
    from pathlib import Path

    import seedance_otel.exporting as exporting

    for path in Path(exporting.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = {node.module or ""} | {alias.name for alias in node.names}
                assert not any("_runtime" in name for name in names), (path.name, node.lineno)
            elif isinstance(node, ast.Import):
                assert not any("_runtime" in a.name for a in node.names), (path.name, node.lineno)
