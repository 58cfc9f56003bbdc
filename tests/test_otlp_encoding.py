"""Our OTLP encoding is the SDK's, byte for byte, and the SDK exporters still send it.

The encoder (seedance_otel.exporting.otlp_encoding) replaces the SDK's
``encode_logs`` for speed; these tests hold it to the SDK's own output on
the same snapshots, pin the exporter internals the sink relies on
(seedance_otel.exporting.otlp_transport), and show that endpoint, headers,
TLS, compression and retries keep their ``OTEL_EXPORTER_OTLP_*`` meaning
on real loopback servers, gRPC and HTTP.
"""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from seedance_otel import FaultKind
from seedance_otel._version import __version__
from seedance_otel.exporting import otlp_transport
from seedance_otel.exporting.otlp_encoding import LogsRequestEncoder
from seedance_otel.exporting.sinks import ExportOutcome, OtlpSink, to_log_records
from seedance_otel.receiver import Receiver

from snapshot_factory import make_snapshot

SCOPE = InstrumentationScope("seedance_otel", __version__)
RESOURCE = Resource.create(
    {
        "service.name": "checkout-service",
        "deployment.environment": "test",
        "host.cpu.count": 8,
        "host.load": 0.75,
        "feature.enabled": True,
        "service.tags": ("a", "b"),
    }
)
EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def every_field(i: int = 0, **fields):
    values: dict[str, Any] = dict(
        timestamp_ns=1_700_000_000_123_456_789 + i,
        trace_id=f"{i + 1:032x}",
        span_id=f"{i + 1:016x}",
        peer_address="127.0.2.3",
        peer_port=443,
        local_port=40_000 + i,
        socket_cookie=2**40 + i,
        connection_reused=True,
        connection_idle_s=8.25,
        connection_age_s=120.5,
        connection_requests=17,
        alpn_offered=("h2", "http/1.1"),
        alpn_negotiated="h2",
        tls_version="TLSv1.3",
        http_method="POST",
        url=f"https://api.test/v1/orders/{i}?page=2",
        errno=104,
        dns_question="api.test",
        dns_duration_s=0.5,
        peer_reuse_ok_max_idle_s=7.9,
        peer_reuse_ok_count=100 + i,
    )
    values.update(fields)
    if values["trace_id"] and values["span_id"]:
        values.setdefault("trace_sampled", i % 2 == 0)  # both ways in every batch
    return make_snapshot(**values)


CASES = {
    "every field": [every_field(i) for i in range(3)],
    "no optional field": [make_snapshot(server_address=None, server_port=None)],
    "required only, zero timestamp": [
        make_snapshot(timestamp_ns=0, server_address=None, server_port=None, error_message="")
    ],
    "alpn as a list, an empty offer, a tuple": [
        every_field(alpn_offered=["h2"]),
        every_field(alpn_offered=()),
        every_field(alpn_offered=("http/1.1",)),
    ],
    "unicode and long values": [
        every_field(
            server_address="bücher.例え.test",
            error_message="connexion réinitialisée — 🔌" * 20,
            url="https://bücher.test/" + "ä" * 300,
        )
    ],
    "trace ids absent, span id only, zero trace id": [
        every_field(trace_id=None, span_id=None),
        every_field(trace_id=None),
        every_field(span_id=None),
        every_field(trace_id="0" * 32),
    ],
    "EOF, idle close, DNS, odd method, SSL version string": [
        every_field(
            kind=FaultKind.CONNECTION_RESET, error_type="EOF", error_message="peer sent FIN"
        ),
        every_field(kind=FaultKind.PEER_CLOSED_IDLE, error_type="EOF", error_message=""),
        every_field(kind=FaultKind.DNS_TIMEOUT, http_method="PURGE", tls_version="weird-1"),
        every_field(tls_version="SSLv3", connection_reused=False, errno=-3),
    ],
    "numbers of every size; int where a float is usual": [
        every_field(socket_cookie=2**63 - 1, local_port=0, connection_requests=0),
        every_field(connection_idle_s=8, connection_age_s=0.0, dns_duration_s=1),
        every_field(connection_idle_s=8.0, connection_reused=True, connection_requests=1),
    ],
    "a large batch (multi-byte lengths)": [every_field(i) for i in range(300)],
    "a snapshot carrying a storm's collapsed faults": [
        every_field(collapsed_count=1),
        every_field(collapsed_count=4_999, collapsed_since_ns=1_700_000_000_000_000_000),
    ],
}


def sdk_request(snapshots, resource=RESOURCE) -> tuple[ExportLogsServiceRequest, int]:
    """The SDK's own encoding of ``snapshots`` as the SDK path builds it, and its observed time."""
    records = to_log_records(snapshots, resource, SCOPE)
    return encode_logs(records), records[0].log_record.observed_timestamp


@pytest.mark.parametrize("case", list(CASES))
def test_same_bytes_as_the_sdk_encoder(case):
    snapshots = CASES[case]
    expected, observed_ns = sdk_request(snapshots)
    encoder = LogsRequestEncoder(RESOURCE, SCOPE)
    for _ in range(2):  # the second pass is served from the encoder's caches
        ours = encoder.encode(snapshots, observed_ns)
        assert ExportLogsServiceRequest.FromString(ours) == expected
        assert ours == expected.SerializeToString(deterministic=True)


def test_sampled_flag_as_the_sdk_sets_it():
    snapshots = [
        every_field(0, trace_sampled=True),
        every_field(1, trace_sampled=False),
        every_field(2, trace_sampled=True, trace_id="0" * 32),
        every_field(3, trace_sampled=True, trace_id=None),
    ]
    expected, observed_ns = sdk_request(snapshots)
    assert [r.flags for r in expected.resource_logs[0].scope_logs[0].log_records] == [1, 0, 1, 0]
    ours = LogsRequestEncoder(RESOURCE, SCOPE).encode(snapshots, observed_ns)
    assert ours == expected.SerializeToString()


def test_each_shared_field_has_its_own_say():
    """A record's shared part is kept per peer and error: a snapshot differing from a
    kept one in any single field that part is made of is encoded afresh."""
    from seedance_otel.exporting.attributes import SHARED_FIELDS

    other: dict[str, Any] = {
        "kind": FaultKind.DNS_TIMEOUT,
        "phase": "connect",
        "library": "aiohttp",
        "server_address": "other.test",
        "server_port": 8443,
        "peer_address": "127.0.9.9",
        "peer_port": 8443,
        "connection_reused": False,
        "alpn_offered": ("http/1.1",),
        "alpn_negotiated": "http/1.1",
        "errno": 111,
        "dns_question": "other.test",
        "client_library": "openai",
        "peer_addresses_tried": ("127.0.0.21", "127.0.0.22"),
        "http_method": "GET",
        "error_type": "ConnectionRefusedError",
        "error_message": "refused",
        "tls_version": "TLSv1.2",
    }
    assert set(other) == set(SHARED_FIELDS)
    encoder = LogsRequestEncoder(RESOURCE, SCOPE)
    for field, value in other.items():
        batch = [every_field(1), every_field(2, **{field: value}), every_field(3)]
        expected, observed_ns = sdk_request(batch)
        assert encoder.encode(batch, observed_ns) == expected.SerializeToString(), field


def test_each_per_fault_field_has_a_fast_branch():
    """The unrolled per-fault writer specialises ints, floats and strings, read
    from the snapshot's annotations; a field declared otherwise (or as a union
    of several) would fall to the generic mapping on every record, slowly."""
    from seedance_otel.exporting import otlp_encoding
    from seedance_otel.exporting.attributes import PER_FAULT_FIELDS

    assert set(otlp_encoding._PER_FAULT_CLASSES) == set(PER_FAULT_FIELDS)
    assert set(otlp_encoding._PER_FAULT_CLASSES.values()) == {int, float, str}
    source = otlp_encoding._PER_FAULT_SOURCE
    assert source.count("if value.__class__ is ") == len(PER_FAULT_FIELDS)


def test_cached_values_never_cross_types_or_keys():
    """``True == 1 == 1.0`` in Python: each must still be encoded as its own type."""
    encoder = LogsRequestEncoder(RESOURCE, SCOPE)
    batches = [
        [every_field(connection_idle_s=1, connection_age_s=1.0, connection_requests=1)],
        [every_field(connection_idle_s=1.0, connection_age_s=1, connection_requests=True)],
        [every_field(connection_reused=True, connection_requests=1)],
        [every_field(alpn_offered=("1",)), every_field(alpn_offered=(1,))],
        [every_field(alpn_offered=(True,)), every_field(alpn_offered=("1",))],
        # The part shared by one peer's faults is kept by value too.
        [every_field(errno=1), every_field(errno=True), every_field(errno=1.0)],
        [every_field(server_port=443), every_field(server_port=443.0)],
        [every_field(peer_port=1), every_field(peer_port=True)],
        [every_field(connection_reused=True), every_field(connection_reused=1)],
        [every_field(peer_addresses_tried=("1",)), every_field(peer_addresses_tried=(1,))],
        [every_field(peer_addresses_tried=(1,)), every_field(peer_addresses_tried=(True,))],
    ]
    for batch in batches:
        expected, observed_ns = sdk_request(batch)
        assert encoder.encode(batch, observed_ns) == expected.SerializeToString()


def test_caches_stay_bounded_and_right_past_their_limit():
    from seedance_otel.exporting import otlp_encoding

    encoder = LogsRequestEncoder(RESOURCE, SCOPE)
    snapshots = [
        every_field(i, url=f"https://api.test/{i}", error_message=f"reset {i}")
        for i in range(2600)
    ]
    for start in range(0, len(snapshots), 500):
        batch = snapshots[start : start + 500]
        expected, observed_ns = sdk_request(batch)
        assert encoder.encode(batch, observed_ns) == expected.SerializeToString()
    tables: list[dict[Any, bytes]] = [
        *encoder._strings.values(),
        *encoder._ints.values(),
        *encoder._texts.values(),
        encoder._shared,
    ]
    assert max(len(t) for t in tables) <= otlp_encoding._CACHE_LIMIT


@pytest.mark.parametrize(
    "resource",
    [Resource.get_empty(), Resource({"service.name": "x"}, schema_url="https://example/1.2")],
)
def test_resource_variants(resource):
    snapshots = [every_field()]
    expected, observed_ns = sdk_request(snapshots, resource)
    ours = LogsRequestEncoder(resource, SCOPE).encode(snapshots, observed_ns)
    assert ours == expected.SerializeToString()


# -- the SDK internals we rely on -----------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_installed_exporters_take_the_encoded_path(monkeypatch, protocol):
    """Fails when the SDK exporters' internals move (see otlp_transport's docstring):
    the sink would still ship, through the SDK's slow encoder."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    sink = OtlpSink()
    try:
        assert sink.encodes_itself, (
            f"the OTLP {protocol} exporter's internals moved: "
            "seedance_otel/exporting/otlp_transport.py falls back to the SDK encoder"
        )
        assert callable(sink._exporter.export_encoded)
    finally:
        sink.shutdown()


def test_moved_internals_fall_back_to_the_sdk_encoder(monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin

    monkeypatch.delattr(OTLPExporterMixin, "_translate_data")
    assert otlp_transport.encoded_exporter("grpc") is None


def test_moved_http_client_falls_back_to_the_sdk_encoder(monkeypatch):
    from opentelemetry.exporter.otlp.proto.http import _common

    monkeypatch.delattr(_common, "_is_request_too_large")
    assert otlp_transport.encoded_exporter("http/protobuf") is None


# -- real bytes on real sockets ------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("fast", [True, False], ids=["encoded", "sdk-encoder"])
def test_both_paths_reach_our_receiver_identically(monkeypatch, protocol, fast):
    snapshots = [
        *CASES["every field"],
        *CASES["unicode and long values"],
        *CASES["EOF, idle close, DNS, odd method, SSL version string"],
        every_field(trace_id=None, span_id=None),
    ]
    with Receiver("127.0.0.1", 0, 0) as receiver:
        endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-service")
        sink = OtlpSink(fast=fast)
        try:
            assert sink.encodes_itself is fast
            assert sink.export(snapshots) == ExportOutcome.EXPORTED
            assert receiver.wait_for_snapshots(len(snapshots), 10)
        finally:
            sink.shutdown()
        assert [r.snapshot for r in receiver.snapshots] == snapshots
        assert {r.service_name for r in receiver.snapshots} == {"checkout-service"}


class Captured:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.failures_left = 0
        self.lock = threading.Lock()

    def take_failure(self) -> bool:
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                return True
            return False


@contextmanager
def grpc_capture(tls_credentials=None) -> Iterator[tuple[int, Captured]]:
    """A gRPC logs endpoint that keeps each request's metadata and raw bytes."""
    captured = Captured()

    def export(request: bytes, context: grpc.ServicerContext) -> bytes:
        if captured.take_failure():
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        captured.requests.append((dict(context.invocation_metadata()), request))
        reply: bytes = ExportLogsServiceResponse().SerializeToString()
        return reply

    class Handler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc has no types
        def service(self, details):
            return (
                grpc.unary_unary_rpc_method_handler(export) if details.method == EXPORT else None
            )

    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((Handler(),))
    if tls_credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", tls_credentials)
    server.start()
    try:
        yield port, captured
    finally:
        server.stop(None)


@contextmanager
def http_capture(ssl_context=None) -> Iterator[tuple[int, Captured]]:
    """An OTLP/HTTP logs endpoint that keeps each request's headers and body."""
    captured = Captured()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if captured.take_failure():
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            captured.requests.append((headers, body))
            reply = ExportLogsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1], captured
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def assert_same_request(payload: bytes, snapshots) -> None:
    """``payload`` is the SDK's request for ``snapshots`` (observed times aside: they differ)."""
    expected, _ = sdk_request(snapshots)
    received = ExportLogsServiceRequest.FromString(payload)
    records = received.resource_logs[0].scope_logs[0].log_records
    assert len(records) == len(snapshots)
    for record, wanted in zip(
        records, expected.resource_logs[0].scope_logs[0].log_records, strict=True
    ):
        assert record.observed_time_unix_nano > 0
        record.observed_time_unix_nano = wanted.observed_time_unix_nano
    assert received == expected


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_exporter_settings_keep_their_meaning(
    monkeypatch, tmp_path, ca, server_ssl_context, protocol, tls
):
    """Endpoint, headers, TLS trust, compression and retries, from OTEL_EXPORTER_OTLP_*."""
    snapshots = [every_field(i) for i in range(20)]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme,authorization=Bearer%20t0k")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5")
    if tls:
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca_file))
        # requests lets these override a session's CA file (the SDK's HTTP
        # transport sets it on the session), whichever encoder is used.
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    scheme = "https" if tls else "http"
    if protocol == "grpc":
        credentials = None
        if tls:
            cert = ca.issue_cert("127.0.0.1")
            credentials = grpc.ssl_server_credentials(
                [(cert.private_key_pem.bytes(), cert.cert_chain_pems[0].bytes())]
            )
        server = grpc_capture(credentials)
    else:
        server = http_capture(server_ssl_context if tls else None)
    with server as (port, captured):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"{scheme}://127.0.0.1:{port}")
        captured.failures_left = 1  # retried once, then delivered
        sink = OtlpSink(resource=RESOURCE)
        try:
            assert sink.encodes_itself
            assert sink.export(snapshots) == ExportOutcome.EXPORTED
        finally:
            sink.shutdown()
    assert captured.failures_left == 0
    [(headers, body)] = captured.requests
    assert headers["x-tenant"] == "acme"
    assert headers["authorization"] == "Bearer t0k"
    if protocol == "http/protobuf":
        assert headers["content-encoding"] == "gzip"
        assert headers["content-type"] == "application/x-protobuf"
        body = gzip.decompress(body)  # gRPC undoes its own compression before we see it
    assert_same_request(body, snapshots)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_collector_down_counts_the_batch_as_failed(monkeypatch, protocol):
    from faultservers import closed_port

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    sink = OtlpSink()
    try:
        assert sink.encodes_itself
        assert sink.export([every_field()]) == ExportOutcome.FAILED
    finally:
        sink.shutdown()


@pytest.mark.parametrize(
    "value",
    [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 65535, 0x1FFFFF, 0x200000, 0xFFFFFFF, 0x10000000]
    + [2**32, 2**56 - 1, 2**56, 2**63 - 1, -1, -(2**63), -104],
)
def test_integers_are_encoded_as_protobuf_does(value):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    from seedance_otel.exporting.otlp_encoding import encode_value

    assert encode_value(value) == AnyValue(int_value=value).SerializeToString()


def test_encoding_lets_other_threads_run_between_slices():
    """The encoder holds the GIL; it hands it over whenever a slice's time has passed."""
    snapshots = [every_field(i) for i in range(100)]
    encoder = LogsRequestEncoder(RESOURCE, SCOPE)
    expected = encoder.encode(snapshots, 7)
    pauses: list[int] = []
    records = encoder.encode_records(snapshots, 7, pause=lambda: pauses.append(1), slice_s=0.0)
    assert len(pauses) == 12  # after every 8 records but the last 4
    assert encoder.request(records) == expected
    pauses.clear()
    records = encoder.encode_records(snapshots, 7, pause=lambda: pauses.append(1), slice_s=60.0)
    assert pauses == []
    assert encoder.request(records) == expected


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_send_lets_other_threads_run_before_and_after(monkeypatch, protocol):
    """The end of the encoding, the SDK's send path and grpc's or ``requests``'
    Python code would otherwise hold the GIL in one stretch."""
    events: list[str] = []
    monkeypatch.setattr(otlp_transport, "let_other_threads_run", lambda: events.append("pause"))
    snapshots = [every_field(i) for i in range(3)]
    with Receiver("127.0.0.1", 0, 0) as receiver:
        endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        sink = OtlpSink()
        try:
            # the stub's channel call (gRPC) or the SDK's HTTP client
            holder = sink._exporter._client
            name = "_export" if protocol == "grpc" else "export"
            send = getattr(holder, name)

            def sending(*args, **kwargs):
                events.append("send")
                return send(*args, **kwargs)

            setattr(holder, name, sending)
            assert sink.export(snapshots) == ExportOutcome.EXPORTED
            assert receiver.wait_for_snapshots(len(snapshots), 10)
        finally:
            sink.shutdown()
    assert events[-3:] == ["pause", "send", "pause"]
    assert events.count("send") == 1
    assert [r.snapshot for r in receiver.snapshots] == snapshots


def test_an_http_request_over_the_exporters_size_limit_fails_whole(monkeypatch, caplog):
    import logging

    with http_capture() as (port, captured):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        sink = OtlpSink()
        try:
            sink._exporter._max_request_size = 1000  # a snapshot is ~1.1 KiB
            with caplog.at_level(logging.WARNING, logger="seedance_otel"):
                assert sink.export([every_field()]) == ExportOutcome.FAILED
            sink._exporter._max_request_size = 10_000
            assert sink.export([every_field()]) == ExportOutcome.EXPORTED
        finally:
            sink.shutdown()
    assert len(captured.requests) == 1
    assert any("max_request_size" in r.getMessage() for r in caplog.records)


def records_of(payload: bytes) -> list[Any]:
    request = ExportLogsServiceRequest.FromString(payload)
    return list(request.resource_logs[0].scope_logs[0].log_records)


def test_a_batch_over_the_byte_limit_goes_as_several_requests(monkeypatch):
    """Requests stay under the limit (a collector refuses an oversized gRPC request
    whole); each is the SDK's encoding of its share, in order, nothing lost."""
    from seedance_otel.exporting import sinks

    monkeypatch.setattr(sinks, "REQUEST_BYTES_LIMIT", 4_000)  # 3 snapshots of ~1.1 KiB
    snapshots = [every_field(i) for i in range(20)]
    with grpc_capture() as (port, captured):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        sink = OtlpSink()
        try:
            assert sink.export(snapshots) == ExportOutcome.EXPORTED
        finally:
            sink.shutdown()
    payloads = [body for _, body in captured.requests]
    assert len(payloads) >= 5
    sent = 0
    for payload in payloads:
        count = len(records_of(payload))
        assert 0 < count
        assert len(payload) <= 4_000 + 500  # the records, plus resource and scope once
        expected, _ = sdk_request(snapshots[sent : sent + count])
        wanted = expected.resource_logs[0].scope_logs[0].log_records
        for record, want in zip(records_of(payload), wanted, strict=True):
            record.observed_time_unix_nano = want.observed_time_unix_nano
            assert record == want
        sent += count
    assert sent == len(snapshots)


def test_a_request_the_exporter_refuses_fails_alone_and_is_counted(monkeypatch, caplog):
    """One snapshot too large for the exporter's limit fails; the rest of its batch
    is delivered, and the shipper's accounting says exactly that."""
    import logging

    import seedance_otel
    from seedance_otel import _runtime
    from seedance_otel.exporting import sinks

    monkeypatch.setattr(sinks, "REQUEST_BYTES_LIMIT", 4_000)
    batch = [every_field(i) for i in range(5)]
    batch += [every_field(5, url="https://api.test/" + "x" * 6_000)]
    batch += [every_field(i) for i in range(6, 11)]
    with http_capture() as (port, captured):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        sink = OtlpSink()
        try:
            sink._exporter._max_request_size = 4_000
            with caplog.at_level(logging.WARNING, logger="seedance_otel"):
                assert sink.export(batch) == sinks.PartlyExported(exported=10, failed=1)
        finally:
            sink.shutdown()
        delivered = [r for _, body in captured.requests for r in records_of(body)]
        assert [r.span_id for r in delivered] == [
            bytes.fromhex(s.span_id) for s in batch if s.url and len(s.url) < 100
        ]

        captured.requests.clear()
        seedance_otel.uninstrument()
        seedance_otel.instrument(exporter="otlp", metrics=False, span_events=False)
        try:
            runtime = _runtime.RUNTIME
            assert runtime is not None and runtime.shipper is not None
            runtime.shipper._sink._exporter._max_request_size = 4_000  # type: ignore[attr-defined]
            for snapshot in batch:
                runtime.publish(snapshot)
            assert seedance_otel.flush(10)
            stats = seedance_otel.stats()
        finally:
            seedance_otel.uninstrument()
    assert stats["captured"] == 11
    assert (stats["exported"], stats["export_failed"], stats["pending"]) == (10, 1, 0)
    assert sum(len(records_of(body)) for _, body in captured.requests) == 10
