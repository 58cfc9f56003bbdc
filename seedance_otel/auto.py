"""``import seedance_otel.auto`` as the first line of a script turns everything on.

1. If the application has not configured OpenTelemetry providers, set up a
   tracer provider and a meter provider from the standard ``OTEL_*``
   variables: ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (``otlp``
   by default; ``console``; ``none``), ``OTEL_EXPORTER_OTLP_PROTOCOL``
   (``grpc`` by default, or ``http/protobuf``), endpoint, headers, TLS and
   the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), as the
   SDK's own exporters read them. Providers set *before* this import are
   left alone; OpenTelemetry lets a global provider be set only once, so an
   application that configures its providers in code should import
   ``seedance_otel.auto`` after doing so (or call ``seedance_otel.instrument()``
   itself), and one that wants no SDK set-up sets ``OTEL_TRACES_EXPORTER=none``
   / ``OTEL_METRICS_EXPORTER=none``.
2. Enable the contrib aiohttp-client and httpx instrumentations when they are
   installed (and not listed in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``),
   so every fault has a client span to join.
3. ``seedance_otel.instrument()``.

``SEEDANCE_OTEL_ENABLED=false`` turns all of it off. Nothing here raises into
the application's import: a step that fails is logged and skipped.
"""

from __future__ import annotations

import importlib.util
import logging
import os

from opentelemetry import metrics, trace

from ._api import instrument
from ._config import load_settings

__all__: list[str] = []

_logger = logging.getLogger("seedance_otel")

_CONTRIB = (
    # (distribution entry-point name, module, class, instrumented library)
    (
        "aiohttp-client",
        "opentelemetry.instrumentation.aiohttp_client",
        "AioHttpClientInstrumentor",
        "aiohttp",
    ),
    ("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor", "httpx"),
)


def _exporter_names(variable: str) -> list[str]:
    raw = os.environ.get(variable, "otlp")
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


def _protocol(signal: str) -> str:
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = os.environ.get(name, "").strip().lower()
        if value:
            return value
    return "grpc"


def _configure_tracing() -> None:
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return  # the application configured its own
    names = [n for n in _exporter_names("OTEL_TRACES_EXPORTER") if n != "none"]
    if not names:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create())
    for name in names:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            if _protocol("TRACES") == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                    OTLPSpanExporter,
                )
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            _logger.warning("seedance_otel.auto: unknown OTEL_TRACES_EXPORTER %r ignored", name)
    trace.set_tracer_provider(provider)


def _configure_metrics() -> None:
    if type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider":
        return
    names = [n for n in _exporter_names("OTEL_METRICS_EXPORTER") if n != "none"]
    if not names:
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricReader,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource

    readers: list[MetricReader] = []
    for name in names:
        if name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif name == "otlp":
            if _protocol("METRICS") == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                    OTLPMetricExporter,
                )
            else:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                    OTLPMetricExporter,
                )
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        else:
            _logger.warning("seedance_otel.auto: unknown OTEL_METRICS_EXPORTER %r ignored", name)
    metrics.set_meter_provider(MeterProvider(resource=Resource.create(), metric_readers=readers))


def _enable_contrib() -> None:
    disabled = {
        name.strip()
        for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")
    }
    for name, module_name, class_name, library in _CONTRIB:
        if name in disabled or importlib.util.find_spec(library) is None:
            continue
        try:
            if importlib.util.find_spec(module_name) is None:
                continue
        except ModuleNotFoundError:
            continue
        module = importlib.import_module(module_name)
        instrumentor = getattr(module, class_name)()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def _enable() -> None:
    if not load_settings().enabled:
        return
    for step in (_configure_tracing, _configure_metrics, _enable_contrib):
        try:
            step()
        except Exception:
            _logger.warning("seedance_otel.auto: %s failed", step.__name__, exc_info=True)
    try:
        instrument()
    except Exception:
        _logger.warning("seedance_otel.auto: instrument() failed", exc_info=True)


_enable()
