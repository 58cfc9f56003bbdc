"""``seedance-otel receive`` under bad input: OTLP error answers, bounded memory, nothing stored.

Each request goes over a real loopback socket to a real :class:`Receiver`;
answers are checked against the OTLP/HTTP spec (status code, a
``google.rpc.Status`` body in the request's encoding) and the JSONL file is
checked to hold nothing from a rejected request.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from seedance_otel.exporting.sinks import to_log_records
from seedance_otel.receiver import ReceivedSnapshot, Receiver

from snapshot_factory import make_snapshot

LIMIT = 64 * 1024
PROTOBUF = "application/x-protobuf"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    return tmp_path / "received.jsonl"


@pytest.fixture
def receiver(jsonl: Path) -> Iterator[Receiver]:
    with Receiver("127.0.0.1", 0, 0, jsonl_path=str(jsonl), max_body_bytes=LIMIT) as r:
        yield r


def logs_request(**fields: Any) -> logs_service_pb2.ExportLogsServiceRequest:
    snapshot = make_snapshot(trace_id=TRACE_ID, span_id=SPAN_ID, **fields)
    records = to_log_records(
        [snapshot], Resource.create({"service.name": "limits"}), InstrumentationScope("t")
    )
    request: logs_service_pb2.ExportLogsServiceRequest = encode_logs(records)
    return request


def mistyped_request() -> logs_service_pb2.ExportLogsServiceRequest:
    """A fault record whose ``server.port`` (443) is a string."""
    request = logs_request()
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    [port] = [kv for kv in record.attributes if kv.value.int_value == 443]
    port.value.string_value = "four-four-three"
    return request


def post(
    receiver: Receiver,
    body: bytes,
    headers: dict[str, str],
    path: str = "/v1/logs",
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.http_port, timeout=30)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def status_message(body: bytes, content_type: str = PROTOBUF) -> str:
    status = status_pb2.Status()
    if content_type == PROTOBUF:
        status.ParseFromString(body)
    else:
        json_format.Parse(body, status)
    assert status.message
    return str(status.message)


def nothing_stored(receiver: Receiver, jsonl: Path) -> bool:
    return not receiver.snapshots and not jsonl.exists()


def test_a_good_request_is_stored(receiver: Receiver, jsonl: Path) -> None:
    body = logs_request().SerializeToString()
    status, _, _ = post(
        receiver, body, {"Content-Type": PROTOBUF, "Content-Length": str(len(body))}
    )
    assert status == 200
    [line] = jsonl.read_text().splitlines()
    assert json.loads(line)["trace_id"] == TRACE_ID


def test_a_body_over_the_limit_is_413_before_it_is_read(receiver: Receiver, jsonl: Path) -> None:
    # Claims 200 MiB and sends none of it: the answer cannot wait for the body.
    with socket.create_connection(("127.0.0.1", receiver.http_port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 209715200\r\n\r\n"
        )
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 413 ")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    assert "exceeds" in status_message(body)
    assert nothing_stored(receiver, jsonl)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_that_inflates_past_the_limit_is_413(
    receiver: Receiver, jsonl: Path, encoding: str
) -> None:
    bomb = bytes(LIMIT * 64)  # 4 MiB of zeros: a few KiB compressed
    packed = gzip.compress(bomb) if encoding == "gzip" else zlib.compress(bomb)
    assert len(packed) < LIMIT
    status, _, body = post(
        receiver,
        packed,
        {
            "Content-Type": PROTOBUF,
            "Content-Encoding": encoding,
            "Content-Length": str(len(packed)),
        },
    )
    assert status == 413
    assert "decompressed" in status_message(body)
    assert nothing_stored(receiver, jsonl)


def test_the_default_limit_is_the_collectors_20_mib() -> None:
    with Receiver("127.0.0.1", None, 0) as receiver:
        assert receiver.max_body_bytes == 20 * 1024 * 1024
        packed = gzip.compress(bytes(21 * 1024 * 1024))
        status, _, _ = post(
            receiver,
            packed,
            {
                "Content-Type": PROTOBUF,
                "Content-Encoding": "gzip",
                "Content-Length": str(len(packed)),
            },
        )
        assert status == 413
        assert not receiver.snapshots


@pytest.mark.parametrize(
    ("headers", "body", "status", "says"),
    [
        ({"Content-Encoding": "gzip"}, b"not gzip at all", 400, "not valid gzip"),
        ({"Content-Encoding": "gzip"}, gzip.compress(b"x" * 100)[:20], 400, "truncated"),
        ({"Content-Encoding": "br"}, b"x", 415, "Content-Encoding"),
        ({}, b"\xff\xff\xff\xff not protobuf", 400, "not a valid protobuf"),
        ({"Content-Type": "text/plain"}, b"x", 415, "Content-Type"),
    ],
)
def test_bad_bodies_are_answered_not_raised(
    receiver: Receiver,
    jsonl: Path,
    headers: dict[str, str],
    body: bytes,
    status: int,
    says: str,
) -> None:
    sent = {"Content-Type": PROTOBUF, "Content-Length": str(len(body)), **headers}
    got, _, answer = post(receiver, body, sent)
    assert got == status
    assert says in status_message(answer)
    assert nothing_stored(receiver, jsonl)


@pytest.mark.parametrize(
    ("length", "status"), [("abc", 400), ("-1", 400), ("1e3", 400), (None, 411)]
)
def test_bad_content_length_is_answered_at_once(
    receiver: Receiver, jsonl: Path, length: str | None, status: int
) -> None:
    head = b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n".encode()
    with socket.create_connection(("127.0.0.1", receiver.http_port), timeout=30) as sock:
        sock.sendall(head + b"\r\n")
        # The server answers and closes without waiting for a body it cannot size.
        answer = sock.makefile("rb").read()
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert nothing_stored(receiver, jsonl)


def test_a_mistyped_record_is_400_and_never_written(receiver: Receiver, jsonl: Path) -> None:
    printed: list[ReceivedSnapshot] = []
    receiver._on_snapshot = printed.append
    body = mistyped_request().SerializeToString()
    status, _, answer = post(
        receiver, body, {"Content-Type": PROTOBUF, "Content-Length": str(len(body))}
    )
    assert status == 400
    assert "server_port" in status_message(answer)
    assert nothing_stored(receiver, jsonl)
    assert printed == []


def test_a_mistyped_record_over_grpc_is_invalid_argument(receiver: Receiver, jsonl: Path) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(mistyped_request(), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert nothing_stored(receiver, jsonl)


def test_a_failing_printer_does_not_turn_a_stored_request_into_an_error(
    receiver: Receiver, jsonl: Path
) -> None:
    def broken(item: object) -> None:
        raise RuntimeError("stdout is gone")

    receiver._on_snapshot = broken
    body = logs_request().SerializeToString()
    status, _, _ = post(
        receiver, body, {"Content-Type": PROTOBUF, "Content-Length": str(len(body))}
    )
    assert status == 200
    assert len(jsonl.read_text().splitlines()) == 1


def otlp_json(request: logs_service_pb2.ExportLogsServiceRequest) -> bytes:
    """OTLP/JSON as the spec writes it: camelCase, ids in hex, enums as numbers."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_logs in document["resourceLogs"]:
        for scope_logs in resource_logs["scopeLogs"]:
            for record in scope_logs["logRecords"]:
                record["traceId"] = TRACE_ID
                record["spanId"] = SPAN_ID
                record["someFutureField"] = 1  # receivers ignore unknown fields
    return json.dumps(document).encode()


def test_otlp_json_is_accepted(receiver: Receiver, jsonl: Path) -> None:
    body = otlp_json(logs_request())
    status, headers, answer = post(
        receiver, body, {"Content-Type": "application/json", "Content-Length": str(len(body))}
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(answer) == {}
    [item] = receiver.snapshots
    assert (item.snapshot.trace_id, item.snapshot.span_id) == (TRACE_ID, SPAN_ID)
    assert item.service_name == "limits"
    assert json.loads(jsonl.read_text())["server_port"] == 443


def test_gzipped_otlp_json_is_accepted(receiver: Receiver) -> None:
    body = gzip.compress(otlp_json(logs_request()))
    status, _, _ = post(
        receiver,
        body,
        {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(body)),
        },
    )
    assert status == 200
    assert len(receiver.snapshots) == 1


def test_bad_otlp_json_is_400_with_a_json_status(receiver: Receiver, jsonl: Path) -> None:
    body = b'{"resourceLogs": [{"scopeLogs": "not a list"}]}'
    status, headers, answer = post(
        receiver, body, {"Content-Type": "application/json", "Content-Length": str(len(body))}
    )
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert "OTLP/JSON" in status_message(answer, "application/json")
    assert nothing_stored(receiver, jsonl)


def test_an_unknown_path_is_404(receiver: Receiver) -> None:
    status, _, answer = post(
        receiver, b"", {"Content-Type": PROTOBUF, "Content-Length": "0"}, "/v2/x"
    )
    assert status == 404
    assert status_message(answer)


def test_a_client_that_stops_mid_body_gets_408_and_is_dropped(jsonl: Path) -> None:
    with Receiver("127.0.0.1", None, 0, jsonl_path=str(jsonl), read_timeout_s=0.5) as receiver:
        body = logs_request().SerializeToString()
        with socket.create_connection(("127.0.0.1", receiver.http_port), timeout=30) as sock:
            sock.sendall(
                b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
            answer = sock.makefile("rb").read()  # returns once the server closes
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert nothing_stored(receiver, jsonl)


def test_an_internal_error_is_a_500_not_a_traceback(
    receiver: Receiver,
    jsonl: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    def broken(request: object, transport: str) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(receiver, "receive_traces", broken)
    body = b""  # an empty ExportTraceServiceRequest
    status, _, answer = post(
        receiver, body, {"Content-Type": PROTOBUF, "Content-Length": "0"}, "/v1/traces"
    )
    assert status == 500
    assert status_message(answer) == "internal error"
    assert "Traceback" not in capfd.readouterr().err
