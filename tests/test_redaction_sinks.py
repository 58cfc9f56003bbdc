"""Real faults carrying the redaction corpus: no secret byte leaves through any sink.

A loopback server resets every connection. For a message case it first
answers with an illegal status line holding the case's text, so the real
aiohttp and httpx parsers put that text into their real exception messages
(``illegal status line: bytearray(b"...")``, ``400, message='Bad status
line...``); the words "connection reset by peer" at its end make the
classifier record it as a reset. For a URL case the client requests the
secret-carrying URL itself (userinfo, query, path) and the server resets.

Every exported byte is then searched for every secret: the JSONL file, the
OTLP/gRPC and OTLP/HTTP requests as received by ``seedance-otel receive``'s
:class:`Receiver`, the span events (exported through OTLP to the same
receiver and read back from the in-memory exporter) and the metrics.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redaction_corpus import MESSAGE_CASES, URL_CASES

import seedance_otel
from seedance_otel import instrumentor
from seedance_otel.receiver import Receiver

from faultservers import RawServer

TAIL = " connection reset by peer"


def _answer_with_the_secret_then_reset(conn: socket.socket, head: bytes) -> None:
    """``/m/<i>``: a status line carrying case i's text (the client's parser puts
    it into its exception message); every connection then ends with a RST."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    path = head.split(b" ", 2)[1].decode() if head.count(b" ") >= 2 else ""
    if path.startswith("/m/"):
        text = MESSAGE_CASES[int(path[3:])].text + TAIL
        conn.sendall(b"XTTP/1.1 " + text.encode() + b"\r\n\r\n")


def _urls(port: int) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    return [f"{base}/m/{i}" for i in range(len(MESSAGE_CASES))] + [
        case.text.format(port=port) for case in URL_CASES
    ]


def _httpx_faults(urls: list[str]) -> int:
    faults = 0
    with httpx.Client(timeout=5) as client:
        for url in urls:
            try:
                client.get(url)
            except httpx.HTTPError:
                faults += 1
    return faults


async def _aiohttp_faults(urls: list[str]) -> int:
    faults = 0
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for url in urls:
            try:
                async with session.get(url) as response:
                    await response.read()
            except aiohttp.ClientError:
                faults += 1
    return faults


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver("127.0.0.1", 0, 0, keep_raw=True) as r:
        yield r


def _all_secrets() -> list[tuple[str, str]]:
    return [(case.id, s) for case in MESSAGE_CASES + URL_CASES for s in case.secrets]


def _leaks(data: bytes) -> list[str]:
    return [case_id for case_id, secret in _all_secrets() if secret.encode() in data]


@pytest.mark.parametrize("sink", ["jsonl", "grpc", "http/protobuf"])
def test_no_secret_reaches_any_exported_byte(
    sink: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    jsonl = tmp_path / "snapshots.jsonl"
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_COMPRESSION", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", raising=False)
    if sink != "jsonl":
        endpoint = receiver.grpc_endpoint if sink == "grpc" else receiver.http_endpoint
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", sink)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True))
    )
    tracer = tracer_provider.get_tracer("redaction")
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    seedance_otel.uninstrument()
    options = {"exporter": "jsonl" if sink == "jsonl" else "otlp", "file": str(jsonl)}
    instrumentor.start({**options, "strict": True}, {"meter_provider": meter_provider})
    try:
        with RawServer(_answer_with_the_secret_then_reset) as server:
            urls = _urls(server.port)
            with tracer.start_as_current_span("httpx-requests"):
                httpx_faults = _httpx_faults(urls)
            with tracer.start_as_current_span("aiohttp-requests"):
                aiohttp_faults = asyncio.run(_aiohttp_faults(urls))
        assert seedance_otel.flush(30)
    finally:
        seedance_otel.uninstrument()
        tracer_provider.shutdown()

    requests = 2 * len(urls)
    assert httpx_faults + aiohttp_faults == requests
    stats = seedance_otel.stats()
    assert stats["exported"] == stats["captured"] >= requests

    if sink == "jsonl":
        exported = jsonl.read_bytes()
        records = [json.loads(line) for line in exported.splitlines()]
    else:
        assert receiver.wait_for_snapshots(stats["captured"], 30)
        exported = b"".join(raw for _, signal, raw in receiver.raw if signal == "logs")
        records = [item.snapshot.to_dict() for item in receiver.snapshots]
    # Every fault arrived, and each one's message or URL shows a redaction
    # (so the secrets really travelled through the capture path).
    assert len(records) == stats["captured"]
    redacted = [r for r in records if "REDACTED" in (r["error_message"] or "") + (r["url"] or "")]
    assert len(redacted) >= requests
    assert _leaks(exported) == []

    span_bytes = "".join(span.to_json() for span in spans.get_finished_spans()).encode()
    assert span_bytes.count(b"seedance.connection.fault") >= requests
    assert _leaks(span_bytes) == []
    otlp_spans = b"".join(raw for _, signal, raw in receiver.raw if signal == "traces")
    assert otlp_spans
    assert _leaks(otlp_spans) == []
    metrics = reader.get_metrics_data()
    assert metrics is not None
    assert _leaks(metrics.to_json().encode()) == []
