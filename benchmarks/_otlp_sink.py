"""A cheap OTLP logs endpoint for benchmarks: gRPC and HTTP, parses each request, counts records.

It stands for a collector on another machine: it answers as soon as the
request is parsed (protobuf's C parser), so what a benchmark measures
against it is the sender. ``seedance-otel receive`` turns every record into
a snapshot in Python and bounds throughput at its own pace.

Runs in its own process. Prints ``listening GRPC_PORT HTTP_PORT`` once ready
and, when its stdin closes, ``records N`` (the total received) before exiting.
Usage: python -m benchmarks._otlp_sink
"""

from __future__ import annotations

import http.server
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
REPLY: bytes = ExportLogsServiceResponse().SerializeToString()


class Counter:
    def __init__(self) -> None:
        self.records = 0
        self._lock = threading.Lock()

    def take(self, payload: bytes) -> None:
        request = ExportLogsServiceRequest.FromString(payload)
        count = sum(
            len(scope.log_records) for rl in request.resource_logs for scope in rl.scope_logs
        )
        with self._lock:
            self.records += count


def main() -> None:
    counter = Counter()

    def export(payload: bytes, context: Any) -> bytes:
        counter.take(payload)
        return REPLY

    class Rpc(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc has no types
        def service(self, details: Any) -> Any:
            if details.method != EXPORT:
                return None
            return grpc.unary_unary_rpc_method_handler(export)

    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((Rpc(),))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    class Http(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            counter.take(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(REPLY)))
            self.end_headers()
            self.wfile.write(REPLY)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Http)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    print(f"listening {grpc_port} {httpd.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes it
    httpd.shutdown()
    server.stop(None)
    print(f"records {counter.records}", flush=True)


if __name__ == "__main__":
    main()
