"""Snapshots reach a real OTLP receiver on loopback, in batches, over gRPC and HTTP."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import seedance_otel
from seedance_otel import FaultKind, instrumentor
from seedance_otel.exporting.attributes import EVENT_NAME
from seedance_otel.receiver import Receiver

from clients import run_steps
from faultservers import Action, HttpFaultServer
from metric_points import attributes, histogram_points, metrics_by_name, number_points


@pytest.fixture
def receiver():
    with Receiver("127.0.0.1", 0, 0) as r:
        yield r


def configure_otlp(monkeypatch, receiver, protocol: str) -> None:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-service")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")


@pytest.fixture
def shipping(request):
    """instrument() with given options (exporter otlp unless said), uninstrument after."""
    started = []

    def start(**options):
        seedance_otel.uninstrument()
        providers = options.pop("providers", {})
        options.setdefault("exporter", "otlp")
        options.setdefault("strict", True)
        instrumentor.start(options, providers)
        started.append(True)

    yield start
    seedance_otel.uninstrument()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_resets_arrive_as_events_in_batches(monkeypatch, receiver, shipping, protocol):
    configure_otlp(monkeypatch, receiver, protocol)
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    shipping(batch_size=512, export_interval_ms=60_000)
    n = 40
    with HttpFaultServer(lambda info: Action.RST) as server:
        with tracer.start_as_current_span("batch-job"):
            run_steps("httpx-sync", [("POST", server.url(f"/item/{i}?token=x")) for i in range(n)])
    local = seedance_otel.snapshots()
    assert len(local) == n
    assert seedance_otel.flush(10)
    assert receiver.wait_for_snapshots(n, 10)
    transport = "grpc" if protocol == "grpc" else "http"
    requests = receiver.requests[(transport, "logs")]
    assert 1 <= requests <= n // 10
    received = [item.snapshot for item in receiver.snapshots]
    # Everything survives the round trip through OTLP: every field, the trace ids.
    assert received == local
    assert all(item.service_name == "checkout-service" for item in receiver.snapshots)
    assert all(
        item.resource.get("deployment.environment") == "test" for item in receiver.snapshots
    )
    assert all(s.trace_id is not None and len(s.trace_id) == 32 for s in received)
    assert all(s.trace_sampled is True for s in received)  # the span's own flag
    stats = seedance_otel.stats()
    assert stats["exported"] == n and stats["pending"] == 0
    assert (
        stats["captured"]
        == stats["exported"] + stats["dropped"] + stats["export_failed"] + stats["pending"]
    )


def test_a_full_batch_leaves_without_waiting_for_the_interval(monkeypatch, receiver, shipping):
    configure_otlp(monkeypatch, receiver, "grpc")
    shipping(batch_size=8, export_interval_ms=60_000)
    with HttpFaultServer(lambda info: Action.RST) as server:
        run_steps("httpx-sync", [("POST", server.url(f"/{i}")) for i in range(8)])
    # No flush: the eighth snapshot fills the batch and wakes the worker.
    assert receiver.wait_for_snapshots(8, 10)


def test_interval_ships_a_partial_batch(monkeypatch, receiver, shipping):
    configure_otlp(monkeypatch, receiver, "grpc")
    shipping(batch_size=512, export_interval_ms=200)
    with HttpFaultServer(lambda info: Action.RST) as server:
        run_steps("httpx-sync", [("POST", server.url("/one"))])
    assert receiver.wait_for_snapshots(1, 10)


def test_span_event_on_the_active_span(shipping):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    shipping(exporter="none")
    with HttpFaultServer(lambda info: Action.RST) as server:
        with tracer.start_as_current_span("checkout"):
            run_steps("httpx-sync", [("POST", server.url("/pay"))])
    [span] = exporter.get_finished_spans()
    [event] = [e for e in span.events if e.name == EVENT_NAME]
    assert event.attributes is not None
    assert event.attributes["seedance.fault.kind"] == "connection_reset"
    assert event.attributes["network.peer.port"] == server.port
    assert span.status.status_code.name == "UNSET"  # the event changes no status


def test_metrics(shipping):
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    shipping(exporter="none", ring_size=16, providers={"meter_provider": provider})
    with HttpFaultServer(middlebox_idle_s=0.2) as server:
        run_steps(
            "httpx-sync",
            [("GET", server.url("/a")), ("sleep", 0.4), ("POST", server.url("/b"))]
            + [("GET", server.url("/c"))],
        )
        first_port = server.port
    with HttpFaultServer(lambda info: Action.RST) as server:
        run_steps("httpx-sync", [("POST", server.url(f"/{i}")) for i in range(20)])
        second_port = server.port
    assert seedance_otel.flush(5)
    data = reader.get_metrics_data()
    provider.shutdown()
    metrics = metrics_by_name(data)
    faults = number_points(metrics["seedance.connection.faults"])
    assert sum(p.value for p in faults) == 21
    assert {attributes(p)["seedance.fault.kind"] for p in faults} == {"connection_reset"}
    idle = histogram_points(metrics["seedance.connection.idle_before_fault"])
    assert sum(p.count for p in idle) == 1
    assert 0.35 <= next(iter(idle)).sum <= 0.8
    assert 4.0 in next(iter(idle)).explicit_bounds
    settled = number_points(metrics["seedance.snapshot.exported"])
    outcomes = {attributes(p).get("error.type"): p.value for p in settled}
    assert outcomes.get("exporter_none", 0) + outcomes.get("ring_overwrite", 0) == 21
    assert outcomes[None] == 0 and outcomes["export_failed"] == 0
    # Exact accounting: everything captured is settled or still queued.
    [queued] = number_points(metrics["seedance.snapshot.queue.size"])
    assert sum(outcomes.values()) + queued.value == seedance_otel.stats()["captured"]
    [capacity] = number_points(metrics["seedance.snapshot.queue.capacity"])
    assert capacity.value == 16
    duration = histogram_points(metrics["http.client.connection.duration"])
    assert sum(p.count for p in duration) >= 20
    # One series per peer (each peer's attributes are built once and kept).
    ports = [attributes(p)["server.port"] for p in duration]
    assert len(ports) == 2 and set(ports) == {first_port, second_port}
    assert {attributes(p)["server.address"] for p in duration} == {"127.0.0.1"}
    assert {attributes(p)["seedance.library"] for p in duration} == {"httpx"}
    # Semconv's advice for this instrument.
    assert list(duration[0].explicit_bounds) == [
        0.01,
        0.02,
        0.05,
        0.1,
        0.2,
        0.5,
        1,
        2,
        5,
        10,
        30,
        60,
        120,
        300,
    ]
    assert "seedance.asyncio.connection.duration" not in metrics


def test_open_connections_idle_and_active(shipping):
    import httpx

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    shipping(exporter="none", providers={"meter_provider": provider})
    with HttpFaultServer() as server:
        with httpx.Client() as client:
            client.get(server.url("/a"))
            data = reader.get_metrics_data()
    provider.shutdown()
    points = number_points(metrics_by_name(data)["http.client.open_connections"])
    by_state = {attributes(p)["http.connection.state"]: p.value for p in points}
    assert by_state.get("idle") == 1
    assert attributes(points[0])["server.port"] == server.port


def test_jsonl_sink(tmp_path, shipping):
    path = tmp_path / "snapshots.jsonl"
    shipping(exporter="jsonl", file=str(path))
    with HttpFaultServer(lambda info: Action.RST) as server:
        run_steps("httpx-sync", [("POST", server.url("/a")), ("POST", server.url("/b"))])
    assert seedance_otel.flush(5)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    import json

    restored = [seedance_otel.ResetContextSnapshot.from_dict(json.loads(line)) for line in lines]
    assert restored == seedance_otel.snapshots()


def test_console_sink(capfd, shipping):
    shipping(exporter="console")
    with HttpFaultServer(lambda info: Action.RST) as server:
        run_steps("httpx-sync", [("POST", server.url("/a"))])
    assert seedance_otel.flush(5)
    err = capfd.readouterr().err
    assert "seedance: connection_reset httpx/request" in err
    assert f":{server.port}" in err


def test_environment_chooses_the_sink(monkeypatch, tmp_path):
    path = tmp_path / "env.jsonl"
    monkeypatch.setenv("SEEDANCE_OTEL_EXPORTER", "jsonl")
    monkeypatch.setenv("SEEDANCE_OTEL_FILE", str(path))
    seedance_otel.uninstrument()
    seedance_otel.instrument(strict=True)
    try:
        with HttpFaultServer(lambda info: Action.RST) as server:
            run_steps("httpx-sync", [("POST", server.url("/a"))])
        assert seedance_otel.flush(5)
    finally:
        seedance_otel.uninstrument()
    assert len(path.read_text().splitlines()) == 1


def test_kinds_other_than_resets_are_shipped_too(monkeypatch, receiver, shipping):
    from faultservers import closed_port

    configure_otlp(monkeypatch, receiver, "http/protobuf")
    shipping(export_interval_ms=100)
    run_steps("httpx-sync", [("GET", f"http://127.0.0.1:{closed_port()}/")])
    assert receiver.wait_for_snapshots(1, 10)
    assert receiver.snapshots[0].snapshot.kind is FaultKind.CONNECT_REFUSED


def test_unsupported_otlp_protocol_warns_and_uses_grpc(monkeypatch, caplog, receiver):
    import logging

    from seedance_otel.exporting.sinks import OtlpSink

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_endpoint)
    with caplog.at_level(logging.WARNING, logger="seedance_otel"):
        sink = OtlpSink()
    try:
        assert sink.name == "otlp/grpc"
        assert any("http/json" in r.getMessage() for r in caplog.records)
    finally:
        sink.shutdown()


def test_metrics_follow_a_new_instrument_after_uninstrument(shipping):
    """The SDK keeps the first registration of an instrument name: observed
    values must come from the runtime that is live now, not the first one."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    def dropped_total() -> float:
        exported = metrics_by_name(reader.get_metrics_data()).get("seedance.snapshot.exported")
        points = number_points(exported) if exported is not None else []
        return sum(p.value for p in points if attributes(p).get("error.type") == "exporter_none")

    with HttpFaultServer(lambda info: Action.RST) as server:
        shipping(exporter="none", providers={"meter_provider": provider})
        run_steps("httpx-sync", [("POST", server.url("/a"))])
        assert seedance_otel.flush(5)
        assert dropped_total() == 1
        shipping(exporter="none", providers={"meter_provider": provider})
        run_steps("httpx-sync", [("POST", server.url(f"/{i}")) for i in range(3)])
        assert seedance_otel.flush(5)
        assert dropped_total() == 3  # the new runtime's count, not the first one's
    provider.shutdown()


def test_open_connections_forget_connections_dropped_without_closing(monkeypatch):
    """A history whose connection is garbage-collected unclosed is neither
    counted nor kept: the table of open connections stays bounded."""
    import gc

    from seedance_otel._connection import ConnectionHistory, PeerStats
    from seedance_otel._ring import Accounting
    from seedance_otel.exporting import metrics as metrics_module

    monkeypatch.setattr(metrics_module, "_PRUNE_AT", 8)
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    accounting = Accounting(0, 0, 0, 0, {})
    metrics = metrics_module.Metrics(lambda: accounting, capacity=16, meter_provider=provider)
    try:
        kept = [ConnectionHistory("httpx", "kept.example", 443, PeerStats()) for _ in range(3)]
        for history in kept:
            metrics.on_connection_opened(history)
        metrics.on_connection_closed(kept.pop(), 0.5)
        for _ in range(50):  # opened, then dropped by the library without a close
            lost = ConnectionHistory("httpx", "lost.example", 80, PeerStats())
            metrics.on_connection_opened(lost)
            del lost  # freed at once (no cycles); the collection below is a safety net
        gc.collect()
        assert len(metrics._connections) <= 2 * 8
        counts = metrics.open_connection_counts()
        assert counts == {(False, "idle", "kept.example", 443, "httpx", None): 2}
        assert len(metrics._connections) == 2
    finally:
        metrics.retire()
        provider.shutdown()
