"""The SDK's OTLP log exporters, sending requests we encoded ourselves.

Endpoint, headers, TLS and client certificates, compression, timeout and
retries stay the SDK's: the exporter is the SDK's own ``OTLPLogExporter``,
built from ``OTEL_EXPORTER_OTLP_*`` as always. Only the encoding step is
replaced, by :class:`~.otlp_encoding.LogsRequestEncoder`'s bytes. That goes
below the exporters' public API, at two places pinned by
``tests/test_otlp_encoding.py`` and ``tests/test_packaging.py`` (and bounded in
``pyproject.toml``):

* gRPC: ``OTLPExporterMixin._export`` (the retrying send loop) asks
  ``_translate_data`` for the request and ``_count_data`` for its size; the
  channel's stub comes from ``_initialize_channel_and_stub``, which we make
  send the request bytes as they are (no parse and re-serialize).
* HTTP (exporter 1.45 and later): ``exporter._client.export(bytes)``, the
  SDK's HTTP client that compresses, posts and retries.

Around each send (the stub's call; the HTTP client's ``export``) the GIL
is released briefly, so an application's event loop does not wait for the
end of the encoding, the SDK's send path and grpc's or ``requests``' Python
code as one stretch.

When those names are missing (an older exporter, or a newer one that moved
them), :func:`encoded_exporter` returns ``None`` and the sink keeps the
SDK's own encoder: slower, never wrong.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["EncodedLogs", "encoded_exporter", "let_other_threads_run"]

_logger = logging.getLogger("seedance_otel")

_EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def let_other_threads_run() -> None:
    """Release the GIL, long enough to lose it, between two stretches of our Python.

    A thread waiting for the GIL (an application's event loop back from
    ``epoll``) otherwise waits for the 5 ms switch interval: a zero-length
    release is usually won back by this thread before the waiter wakes up.
    10 us (plus the kernel's timer slack) is enough for the hand-over and
    costs the shipper a few percent of its throughput, no CPU.
    """
    time.sleep(1e-5)


class EncodedLogs:
    """A serialized ``ExportLogsServiceRequest`` and how many log records it holds.

    ``len()`` is the record count, which is what the SDK exporters' own
    metrics count as items.
    """

    __slots__ = ("count", "payload")

    def __init__(self, payload: bytes, count: int) -> None:
        self.payload = payload
        self.count = count

    def __len__(self) -> int:
        return self.count


def _grpc_exporter() -> Any:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceResponse,
    )
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    class _RawLogsStub:
        """``LogsServiceStub`` whose request is already bytes (gRPC sends bytes as they are).

        The call lets other threads run before and after it. Without that, the
        SDK's retry loop and grpc's Python code before the call blocks run in
        one stretch with the end of the encoding, and an event loop waiting for
        the GIL waits that long (measured: loop lag p99 +1.14 ms over a
        nothing-shipping control, +0.65 ms with these pauses).
        """

        def __init__(self, channel: Any) -> None:
            self._export = channel.unary_unary(
                _EXPORT_METHOD,
                request_serializer=None,
                response_deserializer=ExportLogsServiceResponse.FromString,
            )

        def Export(self, request: bytes, *args: Any, **kwargs: Any) -> Any:
            """Named as the generated stub's method, which the SDK's retry loop calls."""
            let_other_threads_run()
            try:
                return self._export(request, *args, **kwargs)
            finally:
                let_other_threads_run()

    class EncodedGrpcLogExporter(OTLPLogExporter):
        """The SDK's gRPC log exporter, fed :class:`EncodedLogs`."""

        def _initialize_channel_and_stub(self) -> None:
            super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]
            self._client = _RawLogsStub(self._channel)  # type: ignore[assignment]

        def _translate_data(self, data: Any) -> Any:
            if isinstance(data, EncodedLogs):
                return data.payload
            return super()._translate_data(data)  # pragma: no cover - not used by us

        def _count_data(self, data: Any) -> int:
            return len(data)

        def export_encoded(self, encoded: EncodedLogs) -> bool:
            result = OTLPExporterMixin._export(self, encoded)  # type: ignore[misc]
            return bool(result == LogRecordExportResult.SUCCESS)

    return EncodedGrpcLogExporter()


def _http_exporter() -> Any:
    from opentelemetry.exporter.otlp.proto.http import _common
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    class EncodedHttpLogExporter(OTLPLogExporter):
        """The SDK's HTTP log exporter, fed :class:`EncodedLogs`.

        ``export_encoded`` is the SDK's ``export`` minus its ``encode_logs``
        call: shutdown check, exporter metrics, size limit, then the SDK's
        HTTP client (compression, headers, TLS, timeout, retries).
        """

        def export_encoded(self, encoded: EncodedLogs) -> bool:
            if self._shutdown:
                return False
            with self._metrics.export_operation(encoded.count) as result:
                payload = encoded.payload
                if _common._is_request_too_large(payload, self._max_request_size):
                    _logger.warning(
                        "seedance_otel: dropping %d snapshots: the request is %d bytes, "
                        "over the exporter's max_request_size",
                        encoded.count,
                        len(payload),
                    )
                    result.error = _common.RequestPayloadTooLargeError(
                        f"request of {len(payload)} bytes"
                    )
                    return False
                # As around the gRPC call: the end of the encoding, the SDK's
                # client and ``requests`` would otherwise hold the GIL in one
                # stretch (against nginx on loopback, lag p99 +0.86 ms over a
                # nothing-shipping control without the pauses, +0.55 ms with them).
                let_other_threads_run()
                try:
                    outcome = self._client.export(payload)
                finally:
                    let_other_threads_run()
                if not outcome.success:
                    result.error = outcome.error
                    if outcome.status_code is not None:
                        result.error_attrs = {"http.response.status_code": outcome.status_code}
                    return False
            return True

    return EncodedHttpLogExporter()


def encoded_exporter(protocol: str) -> Any | None:
    """The SDK's exporter for ``protocol`` with an ``export_encoded(EncodedLogs) -> bool``.

    ``None`` when the installed exporter lacks the internals listed in the
    module docstring.
    """
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.exporter import OTLPExporterMixin

            if not all(
                hasattr(OTLPExporterMixin, name)
                for name in ("_export", "_translate_data", "_initialize_channel_and_stub")
            ):
                return None
            exporter = _grpc_exporter()
        else:
            from opentelemetry.exporter.otlp.proto.http import _common

            if not all(
                hasattr(_common, name)
                for name in ("_is_request_too_large", "RequestPayloadTooLargeError")
            ):
                return None
            exporter = _http_exporter()
            client = getattr(exporter, "_client", None)
            if not (
                callable(getattr(client, "export", None))
                and hasattr(exporter, "_metrics")
                and hasattr(exporter, "_max_request_size")
            ):
                exporter.shutdown()
                return None
    except ImportError:
        return None
    return exporter
