"""``seedance-otel receive``: a small local OTLP sink for trying the package without a collector.

Listens for OTLP over gRPC (default 127.0.0.1:4317) and HTTP (default
127.0.0.1:4318, protobuf or OTLP/JSON), turns every ``seedance.connection.fault``
log event back into a :class:`ResetContextSnapshot`, prints one line each and can append them as
JSONL for ``seedance-otel diagnose``. Traces and metrics are accepted (and
span ids kept, so a test can join events to client spans) but not stored.

It is a developer tool and a test fixture, not a collector: no batching, no
persistence, no auth, loopback by default. Built on ``grpcio`` and the
official ``opentelemetry-proto`` messages. Bad input gets the OTLP error
answers and is never stored (see :mod:`._http`).
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
import typing
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from .._snapshot import ResetContextSnapshot
from ..exporting.attributes import EVENT_NAME, snapshot_from_attributes
from ._http import MAX_BODY_BYTES, READ_TIMEOUT_S, BadRequest, make_http_handler

__all__ = ["ReceivedSnapshot", "ReceivedSpan", "Receiver", "any_value"]

FAILURE_MODES = (None, "unavailable", "hang")

_logger = logging.getLogger("seedance_otel.receiver")


@dataclass(frozen=True)
class ReceivedSnapshot:
    snapshot: ResetContextSnapshot
    service_name: str | None
    resource: dict[str, Any]
    transport: str

    def to_json_dict(self) -> dict[str, Any]:
        return {"service.name": self.service_name, **self.snapshot.to_dict()}


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    name: str
    kind: int
    events: tuple[str, ...] = field(default=())


def any_value(value: AnyValue) -> Any:
    """A protobuf ``AnyValue`` as the Python value OTel attributes use."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


def _attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


class Receiver:
    """OTLP/gRPC and OTLP/HTTP listeners on loopback; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        grpc_port: int | None = 4317,
        http_port: int | None = 4318,
        *,
        on_snapshot: Callable[[ReceivedSnapshot], None] | None = None,
        jsonl_path: str | None = None,
        keep_raw: bool = False,
        max_body_bytes: int = MAX_BODY_BYTES,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.host = host
        self._grpc_port_wanted = grpc_port
        self._http_port_wanted = http_port
        self._on_snapshot = on_snapshot
        self._jsonl_path = jsonl_path
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self.snapshots: list[ReceivedSnapshot] = []
        self.spans: list[ReceivedSpan] = []
        self.max_body_bytes = max_body_bytes
        """Largest OTLP/HTTP body accepted, on the wire and once inflated."""
        self.read_timeout_s = read_timeout_s
        """How long an OTLP/HTTP client may go without sending a byte of its body."""
        self.keep_raw = keep_raw
        self.raw: list[tuple[str, str, bytes]] = []
        """With ``keep_raw``: every accepted request's (transport, signal, serialized
        protobuf), so a test can search every byte that was exported."""
        self.requests: Counter[tuple[str, str]] = Counter()
        """Export requests received, by (transport, signal)."""
        self.failure_mode: str | None = None
        """``None``, ``"unavailable"`` (gRPC UNAVAILABLE / HTTP 503 + Retry-After)
        or ``"hang"`` (accept, never answer)."""
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._grpc_server: grpc.Server | None = None
        self._http_server: http.server.ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Receiver:
        if self._grpc_port_wanted is not None:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
            logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(self), server)  # type: ignore[no-untyped-call]
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), server)  # type: ignore[no-untyped-call]
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), server)  # type: ignore[no-untyped-call]
            port = server.add_insecure_port(f"{self._bracketed()}:{self._grpc_port_wanted}")
            if port == 0:
                raise OSError(
                    f"cannot listen for OTLP/gRPC on {self.host}:{self._grpc_port_wanted}"
                )
            server.start()
            self._grpc_server, self.grpc_port = server, port
        if self._http_port_wanted is not None:
            handler = make_http_handler(self)
            httpd = http.server.ThreadingHTTPServer((self.host, self._http_port_wanted), handler)
            httpd.daemon_threads = True
            self._http_server, self.http_port = httpd, httpd.server_address[1]
            self._http_thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            self._http_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0.5).wait(5)
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
        if self._http_thread is not None:
            self._http_thread.join(5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _bracketed(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{self._bracketed()}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://{self._bracketed()}:{self.http_port}"

    # -- waiting -----------------------------------------------------------------

    def wait_for_snapshots(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self.snapshots) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def wait_for_spans(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self.spans) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    # -- decoding --------------------------------------------------------------------

    def _hang(self, limit_s: float) -> None:
        self._stopping.wait(limit_s)

    def accept(self, signal: str, request: Any, transport: str) -> None:
        """Store one decoded export request; :class:`BadRequest` leaves nothing stored."""
        if signal == "logs":
            self.receive_logs(request, transport)
        elif signal == "traces":
            self.receive_traces(request, transport)
        else:
            self.receive_metrics(transport)
        if self.keep_raw:
            with self._lock:
                self.raw.append((transport, signal, request.SerializeToString()))

    def receive_logs(
        self, request: logs_service_pb2.ExportLogsServiceRequest, transport: str
    ) -> None:
        received: list[ReceivedSnapshot] = []
        for resource_logs in request.resource_logs:
            resource = _attributes(resource_logs.resource.attributes)
            service = resource.get("service.name")
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    if record.event_name != EVENT_NAME:
                        continue
                    snapshot = _snapshot_of(record)
                    received.append(
                        ReceivedSnapshot(snapshot, _text_or_none(service), resource, transport)
                    )
        # Every line is made before anything is stored: a bad record fails the
        # whole request and leaves neither the file nor the list touched.
        lines = "".join(
            json.dumps(item.to_json_dict(), separators=(",", ":")) + "\n" for item in received
        )
        if self._jsonl_path and received:
            try:
                with open(self._jsonl_path, "a", encoding="utf-8") as f:
                    f.write(lines)
            except OSError as exc:
                _logger.warning("cannot append to %s: %s", self._jsonl_path, exc)
        with self._lock:
            self.requests[(transport, "logs")] += 1
            self.snapshots.extend(received)
            self._lock.notify_all()
        if self._on_snapshot is not None:
            for item in received:
                try:
                    self._on_snapshot(item)
                except Exception:
                    # Stored already: the client must not be told it failed.
                    _logger.warning("on_snapshot failed", exc_info=True)

    def receive_traces(
        self, request: trace_service_pb2.ExportTraceServiceRequest, transport: str
    ) -> None:
        spans = [
            ReceivedSpan(
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                name=span.name,
                kind=span.kind,
                events=tuple(event.name for event in span.events),
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.requests[(transport, "traces")] += 1
            self.spans.extend(spans)
            self._lock.notify_all()

    def receive_metrics(self, transport: str) -> None:
        with self._lock:
            self.requests[(transport, "metrics")] += 1


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        _grpc_failure(self._receiver, context)
        try:
            self._receiver.accept("logs", request, "grpc")
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return logs_service_pb2.ExportLogsServiceResponse()


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        _grpc_failure(self._receiver, context)
        self._receiver.accept("traces", request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        _grpc_failure(self._receiver, context)
        self._receiver.accept("metrics", request, "grpc")
        return metrics_service_pb2.ExportMetricsServiceResponse()


def _grpc_failure(receiver: Receiver, context: Any) -> None:
    mode = receiver.failure_mode
    if mode == "unavailable":
        context.abort(grpc.StatusCode.UNAVAILABLE, "receiver told to be unavailable")
    elif mode == "hang":
        remaining = context.time_remaining()
        receiver._hang(min(remaining if remaining is not None else 30.0, 30.0))
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "receiver told to hang")


_FIELD_TYPES = typing.get_type_hints(ResetContextSnapshot)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _type_ok(value: Any, hint: Any) -> bool:
    """``value`` fits the snapshot field annotation ``hint`` (bools are not numbers)."""
    options = (hint,) if typing.get_origin(hint) is tuple else typing.get_args(hint) or (hint,)
    if value is None or isinstance(value, bool):
        return type(value) in options
    for option in options:
        if typing.get_origin(option) is tuple:
            if isinstance(value, tuple) and all(isinstance(item, str) for item in value):
                return True
            continue
        if option is float and isinstance(value, int):
            return True
        if isinstance(option, type) and option is not bool and isinstance(value, option):
            return True
    return False


def _snapshot_of(record: Any) -> ResetContextSnapshot:
    """The snapshot in a ``seedance.connection.fault`` log record, or :class:`BadRequest`."""
    try:
        snapshot = snapshot_from_attributes(
            _attributes(record.attributes),
            timestamp_ns=record.time_unix_nano,
            trace_id=record.trace_id.hex() or None,
            span_id=record.span_id.hex() or None,
            trace_sampled=bool(record.flags & 0x01) if record.trace_id else None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise BadRequest(400, f"a {EVENT_NAME} record is not a snapshot: {exc!r}") from None
    for name, hint in _FIELD_TYPES.items():
        value = getattr(snapshot, name)
        if not _type_ok(value, hint):
            raise BadRequest(
                400, f"a {EVENT_NAME} record has a mistyped {name}: {type(value).__name__}"
            )
    return snapshot
