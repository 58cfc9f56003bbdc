"""Snapshots carry the trace of the request that hit the fault."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import seedance_otel
from seedance_otel import FaultKind

from clients import CLIENTS, library_of, run_steps
from faultservers import Action, HttpFaultServer


@pytest.fixture
def tracing():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.mark.parametrize("client", CLIENTS)
def test_snapshot_joins_the_users_span(instrumented, tracing, client):
    provider, exporter = tracing
    tracer = provider.get_tracer("test")
    with HttpFaultServer(lambda info: Action.RST) as server:
        with tracer.start_as_current_span("checkout") as span:
            results = run_steps(client, [("POST", server.url("/pay"))])
    assert isinstance(results[0], Exception)
    snap = next(s for s in seedance_otel.snapshots() if s.library == library_of(client))
    ctx = span.get_span_context()
    assert snap.trace_id == f"{ctx.trace_id:032x}"
    assert snap.span_id == f"{ctx.span_id:016x}"


@pytest.mark.parametrize("client", CLIENTS)
def test_snapshot_joins_the_contrib_client_span(instrumented, tracing, client):
    """With the contrib client instrumentations on, the fault belongs to their span."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    provider, exporter = tracing
    contrib = AioHttpClientInstrumentor() if client == "aiohttp" else HTTPXClientInstrumentor()
    contrib.instrument(tracer_provider=provider)
    try:
        with HttpFaultServer(lambda info: Action.RST) as server:
            results = run_steps(client, [("POST", server.url("/pay"))])
    finally:
        contrib.uninstrument()
    assert isinstance(results[0], Exception)
    snaps = [s for s in seedance_otel.snapshots() if s.library == library_of(client)]
    assert snaps and snaps[0].kind is FaultKind.CONNECTION_RESET
    client_spans = [s for s in exporter.get_finished_spans() if s.kind.name == "CLIENT"]
    assert len(client_spans) == 1
    ctx = client_spans[0].context
    assert snaps[0].trace_id == f"{ctx.trace_id:032x}"
    assert snaps[0].span_id == f"{ctx.span_id:016x}"


def test_no_span_no_ids(instrumented):
    with HttpFaultServer(lambda info: Action.RST) as server:
        run_steps("httpx-sync", [("POST", server.url("/x"))])
    snap = seedance_otel.snapshots()[0]
    assert snap.trace_id is None and snap.span_id is None


def test_opentracing_jaeger_client_fallback(instrumented):
    """No OTel span, but a legacy jaeger-client span is active: its ids are used."""
    import opentracing
    from jaeger_client.reporter import InMemoryReporter
    from jaeger_client.sampler import ConstSampler
    from jaeger_client.tracer import Tracer

    reporter = InMemoryReporter()
    tracer = Tracer("legacy-service", reporter=reporter, sampler=ConstSampler(True))
    previous = opentracing.global_tracer()
    opentracing.set_global_tracer(tracer)
    try:
        with HttpFaultServer(lambda info: Action.RST) as server:
            with tracer.start_active_span("legacy-request") as scope:
                results = run_steps("httpx-sync", [("POST", server.url("/x"))])
                span = scope.span
    finally:
        opentracing.set_global_tracer(previous)
    assert reporter.get_spans() == [span]
    assert isinstance(results[0], Exception)
    snap = seedance_otel.snapshots()[0]
    assert snap.trace_id == f"{span.trace_id:032x}"
    assert snap.span_id == f"{span.span_id:016x}"
    assert len(snap.trace_id) == 32 and len(snap.span_id) == 16
