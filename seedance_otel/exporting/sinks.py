"""Where a batch of snapshots goes: OTLP (the SDK's own exporters), the console, a JSONL file.

``SEEDANCE_OTEL_EXPORTER`` chooses the sink:

* ``otlp`` (default): one OTel log record per snapshot, through the SDK's
  ``OTLPLogExporter`` - gRPC or HTTP/protobuf as ``OTEL_EXPORTER_OTLP_LOGS_PROTOCOL``
  / ``OTEL_EXPORTER_OTLP_PROTOCOL`` say (gRPC, ``localhost:4317``, when nothing
  is set), with endpoint, headers, TLS, compression, timeout and retries as the
  SDK resolves them from ``OTEL_EXPORTER_OTLP_*``. The request itself is
  encoded here (:mod:`.otlp_encoding`, the same bytes as the SDK's encoder at
  a fifth of the cost) and handed to that exporter (:mod:`.otlp_transport`).
* ``console``: one readable line per snapshot on stderr.
* ``jsonl``: one JSON object per snapshot appended to ``SEEDANCE_OTEL_FILE``
  (what ``seedance-otel diagnose`` reads).
* ``none``: nothing leaves the process; snapshots stay in the ring for
  ``snapshots()`` and are counted as dropped (``exporter_none``).

The records are exported with our own exporter instance, not through the
application's LoggerProvider: they are shipped even when the application has
no logs pipeline, and never twice when it has one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from .._snapshot import ResetContextSnapshot
from .._version import __version__
from .attributes import EVENT_NAME, snapshot_to_attributes
from .otlp_encoding import LogsRequestEncoder
from .otlp_transport import EncodedLogs, encoded_exporter, let_other_threads_run

__all__ = [
    "ConsoleSink",
    "ExportOutcome",
    "JsonlSink",
    "NullSink",
    "OtlpSink",
    "PartlyExported",
    "Sink",
    "UnavailableSink",
    "encoded_exporter",
    "format_line",
    "make_sink",
    "to_log_records",
]


_logger = logging.getLogger("seedance_otel")


class ExportOutcome:
    EXPORTED = "exported"
    FAILED = "failed"
    DROPPED = "dropped"


class PartlyExported(NamedTuple):
    """A batch sent as more than one request, some of which failed."""

    exported: int
    failed: int


class Sink(Protocol):
    """Receives batches from the shipper's thread only."""

    name: str

    def export(self, snapshots: Sequence[ResetContextSnapshot]) -> str | PartlyExported:
        """Deliver the batch; return an :class:`ExportOutcome` value (or, for a
        batch that went as several requests, how many were exported and failed)."""
        ...

    def shutdown(self) -> None:
        """Stop, interrupting any retry backoff in progress."""
        ...


def format_line(snapshot: ResetContextSnapshot, service: str | None = None) -> str:
    """One human-readable line for a snapshot (console sink, ``seedance-otel receive``)."""
    parts = [snapshot.kind.value, f"{snapshot.library}/{snapshot.phase}"]
    if service:
        parts.insert(0, f"[{service}]")
    target = snapshot.server_address or "?"
    if snapshot.server_port is not None:
        target += f":{snapshot.server_port}"
    if snapshot.peer_address and snapshot.peer_address != snapshot.server_address:
        target += f" ({snapshot.peer_address}:{snapshot.peer_port})"
    parts.append(target)
    if snapshot.connection_reused is not None:
        parts.append("reused" if snapshot.connection_reused else "fresh")
    if snapshot.connection_idle_s is not None:
        parts.append(f"idle={snapshot.connection_idle_s:.2f}s")
    if snapshot.connection_age_s is not None:
        parts.append(f"age={snapshot.connection_age_s:.2f}s")
    if snapshot.alpn_offered is not None:
        offered = ",".join(snapshot.alpn_offered) or "nothing"
        parts.append(f"alpn offered={offered} got={snapshot.alpn_negotiated or 'none'}")
    if snapshot.dns_question:
        duration = f" {snapshot.dns_duration_s:.2f}s" if snapshot.dns_duration_s else ""
        parts.append(f"dns={snapshot.dns_question}{duration}")
    parts.append(snapshot.error_type)
    if snapshot.errno is not None:
        parts.append(f"errno={snapshot.errno}")
    if snapshot.trace_id:
        parts.append(f"trace={snapshot.trace_id}")
    return " ".join(parts)


def default_resource() -> Resource:
    """The application's resource if it configured an SDK tracer provider, else from env."""
    provider = otel_trace.get_tracer_provider()
    resource = getattr(provider, "resource", None)
    if isinstance(resource, Resource):
        return resource
    return Resource.create()


def to_log_records(
    snapshots: Sequence[ResetContextSnapshot], resource: Resource, scope: InstrumentationScope
) -> list[Any]:
    """SDK ``ReadableLogRecord``s: event ``seedance.connection.fault``, WARN, trace context.

    ``timestamp`` is when the fault happened, ``observed_timestamp`` when this
    record was made from it (the log data model's two clocks). The snapshot
    keeps the trace and span id but not the span's trace flags, so the record
    claims none (``sampled`` unset) rather than a sampling decision nobody made.
    """
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.context import Context
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.trace import set_span_in_context

    observed_ns = time.time_ns()
    records = []
    for snapshot in snapshots:
        context: Context | None = None
        if snapshot.trace_id and snapshot.span_id:
            span_context = SpanContext(
                trace_id=int(snapshot.trace_id, 16),
                span_id=int(snapshot.span_id, 16),
                is_remote=False,
                # The span's own flags: sampled only when it was.
                trace_flags=TraceFlags(
                    TraceFlags.SAMPLED if snapshot.trace_sampled else TraceFlags.DEFAULT
                ),
            )
            context = set_span_in_context(NonRecordingSpan(span_context))
        record = LogRecord(
            timestamp=snapshot.timestamp_ns,
            observed_timestamp=observed_ns,
            context=context,
            severity_text="WARN",
            severity_number=SeverityNumber.WARN,
            body=f"{snapshot.kind.value}: {snapshot.error_message or snapshot.error_type}",
            attributes=snapshot_to_attributes(snapshot),
            event_name=EVENT_NAME,
        )
        records.append(
            ReadableLogRecord(log_record=record, resource=resource, instrumentation_scope=scope)
        )
    return records


_PROTOCOLS = ("grpc", "http/protobuf")

ENCODED_RECORDS_PER_REQUEST = 512
"""Records per OTLP request with our encoder, gRPC and HTTP. Fewer requests
cost less: over gRPC the transport measured 2.4 us CPU per snapshot at 512
against 6.9 at 128, and a request's round trip is paid once per 512."""

REQUEST_BYTES_LIMIT = 3 * 2**20
"""Largest request (uncompressed) we build: records beyond it go in the next
request. A collector refuses a gRPC request over 4 MiB whole (its default
``max_recv_msg_size_mib``); a snapshot is ~1.1 KiB, so 512 of them fit
unless URLs or messages are unusually long."""

ENCODE_SLICE_S = 2e-4
"""Encoding time between two GIL releases (:meth:`.LogsRequestEncoder.encode_records`).
By time, not by count, so the application's event loop waits at most this
long whatever the machine's speed. Measured as counts before (loop lag p99
over a nothing-shipping control, median of 6 rounds, ~12 us per record):
16 records (0.2 ms) added 0.5 ms at 31,000 snapshots/s, 32 added 0.7 ms at
36,000/s, 64 added 1.4 ms."""


def request_groups(records: Sequence[bytes], limit: int) -> list[Sequence[bytes]]:
    """``records`` in order, cut into runs of at most ``limit`` bytes (a
    record larger than that alone in its run)."""
    groups: list[Sequence[bytes]] = []
    start = size = 0
    for i, record in enumerate(records):
        if size and size + len(record) > limit:
            groups.append(records[start:i])
            start, size = i, 0
        size += len(record)
    if start < len(records):
        groups.append(records[start:])
    return groups


def _otlp_protocol() -> str:
    """The OTLP protocol the standard variables ask for; a bad value warns and uses gRPC."""
    for name in ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = os.environ.get(name, "").strip().lower()
        if not value:
            continue
        if value in _PROTOCOLS:
            return value
        _logger.warning(
            "seedance_otel: %s=%r is not supported for snapshots (use grpc or "
            "http/protobuf); using grpc",
            name,
            value,
        )
        return "grpc"
    return "grpc"


class OtlpSink:
    """Export through the SDK's OTLP log exporter (gRPC or HTTP/protobuf).

    The request is encoded by :class:`~.otlp_encoding.LogsRequestEncoder`
    and sent by the SDK's exporter (:mod:`.otlp_transport`); with an exporter
    whose internals moved, the SDK's own encoder is used instead.
    """

    max_records_per_request = 32
    """Records per OTLP request with the SDK's encoder (about 70 us each here,
    holding the GIL): 32 keeps each stretch near 2 ms, so an application's
    event loop is not held up by a large batch."""

    def __init__(self, resource: Resource | None = None, *, fast: bool = True) -> None:
        protocol = _otlp_protocol()
        if protocol not in _PROTOCOLS:
            raise ValueError(f"unsupported OTLP protocol {protocol!r} (use grpc or http/protobuf)")
        self.name = f"otlp/{protocol}"
        self._resource = resource or default_resource()
        self._scope = InstrumentationScope("seedance_otel", __version__)
        self._encoder: LogsRequestEncoder | None = None
        exporter: Any = encoded_exporter(protocol) if fast else None
        if exporter is not None:
            self._encoder = LogsRequestEncoder(self._resource, self._scope)
            self.max_records_per_request = ENCODED_RECORDS_PER_REQUEST
            exporter_limit = getattr(exporter, "_max_request_size", 0) or 0  # HTTP only
            self._request_bytes = (
                min(REQUEST_BYTES_LIMIT, exporter_limit)
                if exporter_limit > 0
                else REQUEST_BYTES_LIMIT
            )
        elif protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

            exporter = OTLPLogExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
                OTLPLogExporter,
            )

            exporter = OTLPLogExporter()
        self._exporter = exporter

    @property
    def encodes_itself(self) -> bool:
        """Whether requests are encoded here (else by the SDK's ``encode_logs``)."""
        return self._encoder is not None

    def export(self, snapshots: Sequence[ResetContextSnapshot]) -> str | PartlyExported:
        encoder = self._encoder
        if encoder is not None:
            records = encoder.encode_records(
                snapshots, time.time_ns(), pause=let_other_threads_run, slice_s=ENCODE_SLICE_S
            )
            exported = 0
            for group in request_groups(records, self._request_bytes):
                if self._exporter.export_encoded(EncodedLogs(encoder.request(group), len(group))):
                    exported += len(group)
            if exported == len(records):
                return ExportOutcome.EXPORTED
            if exported == 0:
                return ExportOutcome.FAILED
            return PartlyExported(exported, len(records) - exported)
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        records = to_log_records(snapshots, self._resource, self._scope)
        result = self._exporter.export(records)
        return (
            ExportOutcome.EXPORTED
            if result == LogRecordExportResult.SUCCESS
            else ExportOutcome.FAILED
        )

    def shutdown(self) -> None:
        self._exporter.shutdown()


class ConsoleSink:
    """One line per snapshot on stderr."""

    name = "console"

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream or sys.stderr

    def export(self, snapshots: Sequence[ResetContextSnapshot]) -> str:
        try:
            self._stream.write("".join(f"seedance: {format_line(s)}\n" for s in snapshots))
            self._stream.flush()
        except (OSError, ValueError):
            return ExportOutcome.FAILED
        return ExportOutcome.EXPORTED

    def shutdown(self) -> None:
        pass


class JsonlSink:
    """Append one JSON object per snapshot to a file (``seedance-otel diagnose`` input)."""

    name = "jsonl"

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._failing = False
        """Warned already: one warning per run of failures, not one per batch."""

    def export(self, snapshots: Sequence[ResetContextSnapshot]) -> str:
        lines = "".join(json.dumps(s.to_dict(), separators=(",", ":")) + "\n" for s in snapshots)
        with self._lock:
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(lines)
            except OSError as exc:
                if not self._failing:
                    self._failing = True
                    _logger.warning(
                        "seedance_otel: cannot append snapshots to %s (%s); they are counted "
                        "as export_failed until it is writable",
                        os.path.abspath(self.path),
                        exc.strerror or exc,
                    )
                return ExportOutcome.FAILED
            if self._failing:
                self._failing = False
                _logger.info("seedance_otel: appending snapshots to %s again", self.path)
        return ExportOutcome.EXPORTED

    def shutdown(self) -> None:
        pass


class UnavailableSink:
    """Stands in for a sink that could not be built; every batch fails (and is counted)."""

    name = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def export(self, snapshots: Sequence[ResetContextSnapshot]) -> str:
        return ExportOutcome.FAILED

    def shutdown(self) -> None:
        pass


class NullSink:
    """``SEEDANCE_OTEL_EXPORTER=none``: keep nothing beyond the ring."""

    name = "none"

    def export(self, snapshots: Sequence[ResetContextSnapshot]) -> str:
        return ExportOutcome.DROPPED

    def shutdown(self) -> None:
        pass


def make_sink(exporter: str, file: str) -> Sink:
    if exporter == "otlp":
        return OtlpSink()
    if exporter == "console":
        return ConsoleSink()
    if exporter == "jsonl":
        return JsonlSink(file)
    return NullSink()
