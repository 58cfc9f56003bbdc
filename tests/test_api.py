"""The public contract (README, "What a snapshot holds"): names, fields, types, and the API's behaviour."""

from __future__ import annotations

import dataclasses
import logging
import ssl
import typing

import pytest

import seedance_otel
from seedance_otel import FaultKind, ResetContextSnapshot
from seedance_otel._config import SETTINGS, Settings, load_settings

from clients import run_steps
from faultservers import Action, HttpFaultServer

CONTRACT_FIELDS = {
    "kind": "FaultKind",
    "timestamp_ns": "int",
    "trace_id": "str | None",
    "span_id": "str | None",
    "trace_sampled": "bool | None",
    "library": "str",
    "phase": "str",
    "server_address": "str | None",
    "server_port": "int | None",
    "peer_address": "str | None",
    "peer_port": "int | None",
    "local_port": "int | None",
    "socket_cookie": "int | None",
    "connection_reused": "bool | None",
    "connection_idle_s": "float | None",
    "connection_age_s": "float | None",
    "connection_requests": "int | None",
    "alpn_offered": "tuple[str, ...] | None",
    "alpn_negotiated": "str | None",
    "tls_version": "str | None",
    "http_method": "str | None",
    "url": "str | None",
    "error_type": "str",
    "errno": "int | None",
    "error_message": "str",
    "dns_question": "str | None",
    "dns_duration_s": "float | None",
    # Added since the first release of the contract (see CHANGELOG):
    "peer_reuse_ok_max_idle_s": "float | None",
    "peer_reuse_ok_count": "int | None",
    "client_library": "str | None",
    "peer_addresses_tried": "tuple[str, ...] | None",
    "collapsed_count": "int | None",
    "collapsed_since_ns": "int | None",
}


def test_public_names():
    assert sorted(seedance_otel.__all__) == seedance_otel.__all__
    for name in seedance_otel.__all__:
        assert hasattr(seedance_otel, name), name
    for name in ("instrument", "uninstrument", "snapshots", "flush", "stats"):
        assert callable(getattr(seedance_otel, name))


def test_snapshot_fields_are_exactly_the_contract():
    fields = {f.name: f.type for f in dataclasses.fields(ResetContextSnapshot)}
    assert fields == CONTRACT_FIELDS
    params = ResetContextSnapshot.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen
    assert hasattr(ResetContextSnapshot, "__slots__")
    hints = typing.get_type_hints(ResetContextSnapshot)
    assert hints["kind"] is FaultKind


def test_fault_kind_is_a_str_enum():
    assert issubclass(FaultKind, str)
    kind: str = FaultKind.CONNECTION_RESET
    assert kind == "connection_reset"
    assert str(FaultKind.DNS_TIMEOUT) == "dns_timeout"
    required = {"connection_reset", "dns_timeout", "alpn_mismatch"}
    assert required <= {k.value for k in FaultKind}


def test_snapshot_round_trips_through_dict():
    snap = ResetContextSnapshot(
        kind=FaultKind.ALPN_MISMATCH,
        timestamp_ns=1,
        library="httpx",
        phase="tls",
        error_type="httpcore.ConnectError",
        error_message="alert",
        alpn_offered=("http/1.1",),
    )
    data = snap.to_dict()
    assert data["kind"] == "alpn_mismatch" and data["alpn_offered"] == ["http/1.1"]
    assert ResetContextSnapshot.from_dict(data) == snap
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.kind = FaultKind.TLS_ERROR  # type: ignore[misc]


def test_instrument_is_idempotent_and_rejects_unknown_options(caplog):
    seedance_otel.uninstrument()
    with pytest.raises(TypeError, match="ring_sise"):
        seedance_otel.instrument(ring_sise=10)
    with pytest.raises(TypeError, match="ring_size"):
        seedance_otel.instrument(ring_size="many")
    try:
        seedance_otel.instrument(exporter="none")
        seedance_otel.instrument(exporter="none")  # no error, no second set of hooks
        import aiohttp.connector

        hooked = aiohttp.connector.BaseConnector.__dict__["_release"]
        assert hooked.__wrapped__.__qualname__ == "BaseConnector._release"
        assert not hasattr(hooked.__wrapped__, "__wrapped__")  # hooked once, not twice
    finally:
        seedance_otel.uninstrument()


def _patched_targets():
    import asyncio.base_events
    import socket

    import aiohttp.client_proto
    import aiohttp.connector
    import aiohttp.helpers
    import httpcore._async.connection
    import httpcore._async.http2
    import httpcore._async.http11
    import httpcore._sync.connection
    import httpcore._sync.http2
    import httpcore._sync.http11
    import httpcore._synchronization

    return [
        (asyncio.base_events.BaseEventLoop, "getaddrinfo"),
        (asyncio.base_events.BaseEventLoop, "create_connection"),
        (asyncio.base_events.BaseEventLoop, "start_tls"),
        (socket, "getaddrinfo"),
        (aiohttp.connector, "ceil_timeout"),
        (ssl.SSLContext, "set_alpn_protocols"),
        (ssl.SSLContext, "__new__"),
        (aiohttp.connector.Connection, "__init__"),
        (aiohttp.connector.BaseConnector, "_release"),
        (aiohttp.connector.BaseConnector, "_wait_for_available_connection"),
        (aiohttp.connector.TCPConnector, "_create_connection"),
        (aiohttp.connector.TCPConnector, "_resolve_host"),
        (aiohttp.client_proto.ResponseHandler, "connection_lost"),
        (aiohttp.helpers.TimerContext, "timeout"),
        (httpcore._async.connection.AsyncHTTPConnection, "_connect"),
        (httpcore._sync.connection.HTTPConnection, "_connect"),
        (httpcore._async.http11.AsyncHTTP11Connection, "handle_async_request"),
        (httpcore._async.http11.AsyncHTTP11Connection, "_response_closed"),
        (httpcore._async.http11.AsyncHTTP11Connection, "aclose"),
        (httpcore._sync.http11.HTTP11Connection, "handle_request"),
        (httpcore._sync.http11.HTTP11Connection, "_response_closed"),
        (httpcore._sync.http11.HTTP11Connection, "close"),
        (httpcore._async.http2.AsyncHTTP2Connection, "handle_async_request"),
        (httpcore._async.http2.AsyncHTTP2Connection, "_response_closed"),
        (httpcore._sync.http2.HTTP2Connection, "handle_request"),
        (httpcore._sync.http2.HTTP2Connection, "_response_closed"),
        (httpcore._synchronization.AsyncEvent, "wait"),
        (httpcore._synchronization.Event, "wait"),
    ]


def test_uninstrument_restores_every_original_exactly():
    seedance_otel.uninstrument()
    targets = _patched_targets()
    originals = {(owner, name): owner.__dict__[name] for owner, name in targets}
    seedance_otel.instrument(exporter="none")
    try:
        for owner, name in targets:
            assert owner.__dict__[name] is not originals[(owner, name)], (owner, name)
    finally:
        seedance_otel.uninstrument()
    for owner, name in targets:
        assert owner.__dict__[name] is originals[(owner, name)], (owner, name)
    import aiohttp.client_proto
    import httpcore._async.http11

    # Class-level defaults we added are gone too.
    assert "_seedance_history" not in aiohttp.client_proto.ResponseHandler.__dict__
    assert "_seedance_history" not in httpcore._async.http11.AsyncHTTP11Connection.__dict__
    # And the libraries still work, with nothing captured any more.
    with HttpFaultServer(lambda info: Action.RST) as server:
        results = run_steps("httpx-sync", [("POST", server.url("/x"))])
    assert isinstance(results[0], Exception)
    assert all(s.url is None or str(server.port) not in s.url for s in seedance_otel.snapshots())


def test_snapshots_are_oldest_first_and_ring_is_bounded():
    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="none", strict=True, ring_size=16)
    try:
        with HttpFaultServer(lambda info: Action.RST) as server:
            paths = [f"/{i}" for i in range(20)]
            run_steps("httpx-sync", [("POST", server.url(p)) for p in paths])
        snaps = seedance_otel.snapshots()
        assert len(snaps) == 16
        urls = [s.url for s in snaps if s.url is not None]
        assert len(urls) == len(snaps)
        assert [url.rsplit("/", 1)[1] for url in urls] == [str(i) for i in range(4, 20)]
        assert [s.timestamp_ns for s in snaps] == sorted(s.timestamp_ns for s in snaps)
        stats = seedance_otel.stats()
        assert stats["captured"] == 20
        assert stats["dropped"] == 4 and stats["dropped_ring_overwrite"] == 4
        assert stats["captured"] == (
            stats["exported"] + stats["dropped"] + stats["export_failed"] + stats["pending"]
        )
    finally:
        seedance_otel.uninstrument()


def test_environment_settings_and_bad_values(caplog):
    env = {
        "SEEDANCE_OTEL_RING_SIZE": "lots",
        "SEEDANCE_OTEL_STRICT": "yes",
        "SEEDANCE_OTEL_EXPORTER": "carrier-pigeon",
        "SEEDANCE_OTEL_BATCH_SIZE": "64",
    }
    with caplog.at_level(logging.WARNING, logger="seedance_otel"):
        settings = load_settings(env)
    assert settings.ring_size == Settings().ring_size
    assert settings.strict is True
    assert settings.exporter == "otlp"
    assert settings.batch_size == 64
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert any("SEEDANCE_OTEL_RING_SIZE" in w and "lots" in w for w in warnings)
    assert any("SEEDANCE_OTEL_EXPORTER" in w and "carrier-pigeon" in w for w in warnings)


def test_every_setting_is_documented_with_its_default():
    for setting in SETTINGS:
        assert setting.env.startswith("SEEDANCE_OTEL_")
        assert setting.doc
        assert getattr(Settings(), setting.option) == setting.default


def test_stats_before_instrumenting_is_all_zero():
    import seedance_otel._runtime as runtime

    seedance_otel.uninstrument()
    saved = runtime.LAST_RUNTIME
    runtime.LAST_RUNTIME = None
    try:
        stats = seedance_otel.stats()
        assert set(stats.values()) == {0}
        # The same counters as a running instrumentation's, all zero.
        assert {"captured", "collapsed", "collapse_pending"} <= set(stats)
        assert seedance_otel.snapshots() == []
        assert seedance_otel.flush(0.1) is True
    finally:
        runtime.LAST_RUNTIME = saved


def test_instrumentor_and_module_functions_agree(caplog):
    import logging

    from seedance_otel import SeedanceInstrumentor

    seedance_otel.uninstrument()
    seedance_otel.instrument(exporter="none")
    assert SeedanceInstrumentor().is_instrumented_by_opentelemetry
    SeedanceInstrumentor().uninstrument()
    assert seedance_otel.stats()["captured"] == 0
    import aiohttp.connector

    assert not hasattr(aiohttp.connector.BaseConnector._release, "__wrapped__")
    # A loader passing keyword arguments meant for others does not stop us.
    with caplog.at_level(logging.WARNING, logger="seedance_otel"):
        SeedanceInstrumentor().instrument(exporter="none", excluded_urls="x", tracer_provider=None)
    try:
        assert hasattr(aiohttp.connector.BaseConnector._release, "__wrapped__")
        assert any("excluded_urls" in r.getMessage() for r in caplog.records)
    finally:
        SeedanceInstrumentor().uninstrument()
