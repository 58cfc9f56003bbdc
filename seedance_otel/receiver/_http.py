"""OTLP/HTTP for the receiver: bounded bodies and the error answers the OTLP spec asks for.

Per the OTLP/HTTP specification and the collector's ``confighttp``:

* ``application/x-protobuf`` and ``application/json`` (OTLP/JSON: protobuf's
  JSON mapping, with trace and span ids as hex, not base64) are accepted;
  anything else is ``415``.
* ``Content-Encoding`` ``gzip``, ``deflate`` or none; another is ``415``.
* The body may not exceed :data:`MAX_BODY_BYTES` on the wire nor once
  inflated (the collector's ``max_request_body_size`` default, 20 MiB):
  ``413``, decided before reading (from ``Content-Length``) or while
  inflating, never after holding the whole inflated body in memory.
* A missing, non-numeric or negative ``Content-Length`` (or a chunked body)
  is ``411``/``400``; a body that does not decompress or parse, or records
  that do not make a snapshot, is ``400`` and nothing of the request is stored.
* Every 4xx/5xx body is a ``google.rpc.Status`` in the request's encoding.
* A client that stops sending mid-body gets ``408`` and is dropped after
  :data:`READ_TIMEOUT_S` without a byte instead of holding a thread.
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import logging
import re
import zlib
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError, Message  # type: ignore[import-untyped]
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

if TYPE_CHECKING:
    from . import Receiver

__all__ = ["MAX_BODY_BYTES", "READ_TIMEOUT_S", "BadRequest", "make_http_handler"]

_logger = logging.getLogger("seedance_otel.receiver")

MAX_BODY_BYTES = 20 * 1024 * 1024
READ_TIMEOUT_S = 10.0
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# google.rpc.Code values used in Status bodies.
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_UNAVAILABLE = 14
_UNIMPLEMENTED = 12
_NOT_FOUND = 5
_INTERNAL = 13

SIGNALS: dict[str, tuple[str, type[Message], type[Message]]] = {
    "/v1/logs": (
        "logs",
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
    "/v1/traces": (
        "traces",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "/v1/metrics": (
        "metrics",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
}


class BadRequest(Exception):
    """The request cannot be accepted: ``status`` is the HTTP answer, the text says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decompressed, never producing more than ``limit`` bytes."""
    if encoding in ("", "identity"):
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise BadRequest(415, f"unsupported Content-Encoding {encoding!r} (use gzip or deflate)")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise BadRequest(413, f"the decompressed body exceeds {limit} bytes")
        out += inflater.flush()
    except zlib.error as exc:
        raise BadRequest(400, f"the body is not valid {encoding}: {exc}") from None
    if not inflater.eof:
        raise BadRequest(400, f"the body is truncated {encoding}")
    if len(out) > limit:
        raise BadRequest(413, f"the decompressed body exceeds {limit} bytes")
    return out


_ID_KEYS = frozenset(
    ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
)
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping wants base64."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and _HEX.fullmatch(value):
                out[key] = base64.b64encode(binascii.unhexlify(value)).decode("ascii")
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def parse_request(body: bytes, content_type: str, request_type: type[Message]) -> Message:
    """The export request in ``body`` (protobuf or OTLP/JSON); :class:`BadRequest` if not."""
    request = request_type()
    try:
        if content_type == JSON:
            document = _hex_ids_to_base64(json.loads(body))
            # Receivers must ignore unknown fields (OTLP/JSON spec).
            json_format.ParseDict(document, request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        kind = "OTLP/JSON" if content_type == JSON else "protobuf"
        raise BadRequest(400, f"the body is not a valid {kind} export request: {exc}") from None
    return request


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def make_http_handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = receiver.read_timeout_s  # per socket read: a stalled client is dropped

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._fail(PROTOBUF, BadRequest(405, "only POST is supported"), close=False)

        def do_POST(self) -> None:
            content_type = _media_type(self.headers.get("Content-Type"))
            answer_type = JSON if content_type == JSON else PROTOBUF
            try:
                body = self._read_body(receiver.max_body_bytes)
            except BadRequest as exc:
                self._fail(answer_type, exc, close=True)  # the body was not read
                return
            try:
                self._handle(body, content_type)
            except BadRequest as exc:
                self._fail(answer_type, exc, close=False)
            except Exception as exc:
                # Our own bug, not the client's: one log line and a 500, not a
                # traceback per request on the developer's terminal.
                _logger.warning("receive: %s on %s: %s", type(exc).__name__, self.path[:100], exc)
                self._fail(answer_type, BadRequest(500, "internal error"), close=True)

        def _read_body(self, limit: int) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                raise BadRequest(411, "chunked bodies are not supported; send Content-Length")
            raw = self.headers.get("Content-Length")
            if raw is None:
                raise BadRequest(411, "Content-Length is required")
            if not raw.strip().isdigit():
                raise BadRequest(400, f"bad Content-Length {raw!r}")
            length = int(raw)
            if length > limit:
                raise BadRequest(413, f"the body ({length} bytes) exceeds {limit} bytes")
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                raise BadRequest(408, f"no body byte for {self.timeout:g} s") from None
            if len(body) != length:
                raise BadRequest(400, "the body ended before Content-Length bytes")
            return body

        def _handle(self, body: bytes, content_type: str) -> None:
            signal = SIGNALS.get(self.path.split("?", 1)[0])
            if signal is None:
                raise BadRequest(404, f"no OTLP signal at {self.path[:100]!r}")
            if receiver.failure_mode == "unavailable":
                self._reply(
                    503, _status(_UNAVAILABLE, "unavailable"), PROTOBUF, {"Retry-After": "1"}
                )
                return
            if receiver.failure_mode == "hang":
                receiver._hang(30.0)
                self.close_connection = True
                return
            if content_type not in (PROTOBUF, JSON):
                raise BadRequest(
                    415, f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}"
                )
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            body = _inflate(body, encoding, receiver.max_body_bytes)
            name, request_type, response_type = signal
            request = parse_request(body, content_type, request_type)
            receiver.accept(name, request, "http")
            response = response_type()
            if content_type == JSON:
                self._reply(200, json_format.MessageToJson(response).encode(), JSON)
            else:
                self._reply(200, response.SerializeToString(), PROTOBUF)

        def _fail(self, content_type: str, exc: BadRequest, *, close: bool) -> None:
            code = {
                404: _NOT_FOUND,
                500: _INTERNAL,
                405: _UNIMPLEMENTED,
                413: _RESOURCE_EXHAUSTED,
                415: _UNIMPLEMENTED,
            }.get(exc.status, _INVALID_ARGUMENT)
            status = status_pb2.Status(code=code, message=str(exc))
            body = (
                json_format.MessageToJson(status).encode()
                if content_type == JSON
                else status.SerializeToString()
            )
            if close:
                self.close_connection = True
            self._reply(exc.status, body, content_type, {"Connection": "close"} if close else None)

        def _reply(
            self,
            status: int,
            body: bytes,
            content_type: str,
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _status(code: int, message: str) -> bytes:
    body: bytes = status_pb2.Status(code=code, message=message).SerializeToString()
    return body
