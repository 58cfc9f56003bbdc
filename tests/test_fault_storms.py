"""Fault storms: identical faults beyond a per-key rate are counted, and every count arrives.

Real storms on loopback (a server that resets every connection, real httpx and
aiohttp clients), with the metrics read from a real SDK meter provider: each
fault is counted exactly once, in the snapshots' ``1 + collapsed_count`` sum,
in the fault counter, and in ``stats()``; a storm that stops leaves no count
behind.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import seedance_otel
from seedance_otel import FaultKind, ResetContextSnapshot, instrumentor
from seedance_otel._collapse import WINDOW_NS, Carried, Collapser
from seedance_otel._snapshot import ResetContextSnapshot as Snapshot

from faultservers import Action, HttpFaultServer, closed_port
from metric_points import number_points

STORM = 120


def faults_in(snapshots: list[ResetContextSnapshot]) -> int:
    return sum(1 + (s.collapsed_count or 0) for s in snapshots)


def fault_counter_total(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    total = 0
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == "seedance.connection.faults":
                    total += sum(int(point.value) for point in number_points(metric))
    return total


@pytest.fixture
def storm_metrics(tmp_path: Path) -> Any:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    seedance_otel.uninstrument()

    def start(**options: Any) -> InMemoryMetricReader:
        options.setdefault("exporter", "jsonl")
        options.setdefault("file", str(tmp_path / "snapshots.jsonl"))
        options.setdefault("strict", True)
        instrumentor.start(options, {"meter_provider": provider})
        return reader

    yield start
    seedance_otel.uninstrument()
    provider.shutdown()


async def httpx_storm(url: str, count: int) -> int:
    failures = 0
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=5) as client:
        for _ in range(count):
            try:
                await client.get(url)
            except httpx.TransportError:
                failures += 1
    return failures


async def aiohttp_storm(url: str, count: int) -> int:
    failures = 0
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(count):
            try:
                async with session.get(url) as response:
                    await response.read()
            except aiohttp.ClientError:
                failures += 1
    return failures


@pytest.mark.parametrize("storm", [httpx_storm, aiohttp_storm], ids=["httpx", "aiohttp"])
def test_a_reset_storm_collapses_with_every_fault_counted(storm_metrics, tmp_path, storm):
    reader = storm_metrics(collapse_per_s=5)
    with HttpFaultServer(lambda info: Action.RST) as server:
        failures = asyncio.run(storm(server.url("/"), STORM))
        attempts = len(server.requests)
    assert failures == STORM
    # aiohttp retries an idempotent request once by itself: each attempt that
    # met a reset is a fault (the server saw every one).
    assert attempts >= STORM
    assert seedance_otel.flush(10)
    snapshots = seedance_otel.snapshots()
    resets = [s for s in snapshots if s.kind is FaultKind.CONNECTION_RESET]
    # Few full snapshots, many faults: the counts make up the difference.
    assert len(resets) < STORM // 2, len(resets)
    assert faults_in(resets) == attempts
    assert any(s.collapsed_count for s in resets)
    stats = seedance_otel.stats()
    assert stats["collapse_pending"] == 0
    assert stats["captured"] + stats["collapsed"] == faults_in(snapshots)
    assert stats["captured"] == (
        stats["exported"] + stats["dropped"] + stats["export_failed"] + stats["pending"]
    )
    assert fault_counter_total(reader) == faults_in(snapshots)
    # The counts travel on the wire too (the JSONL sink writes every field).
    lines = (tmp_path / "snapshots.jsonl").read_text().splitlines()
    shipped = [ResetContextSnapshot.from_dict(json.loads(line)) for line in lines]
    assert faults_in([s for s in shipped if s.kind is FaultKind.CONNECTION_RESET]) == attempts


def test_a_counted_fault_costs_no_search_for_its_request(storm_metrics, monkeypatch):
    # aiohttp's release hook is not handed the request: a full snapshot finds it
    # in aiohttp's frames (reading their locals); a fault only counted must not.
    from seedance_otel.instrumentation import aiohttp_client

    searches: list[object] = []
    search = aiohttp_client._request_in_frames

    def counted_search() -> object:
        found = search()
        searches.append(found)
        return found

    monkeypatch.setattr(aiohttp_client, "_request_in_frames", counted_search)
    storm_metrics(collapse_per_s=2)
    with HttpFaultServer(lambda info: Action.RST) as server:
        assert asyncio.run(aiohttp_storm(server.url("/storm"), STORM)) == STORM
    assert seedance_otel.flush(10)
    full = [
        s
        for s in seedance_otel.snapshots()
        if s.kind is FaultKind.CONNECTION_RESET and s.local_port is not None
    ]
    assert full and all(s.url is not None and s.url.endswith("/storm") for s in full)
    assert len(searches) == len(full) < STORM // 2
    assert all(found is not None for found in searches)


def test_a_counted_connect_failure_builds_no_connection_fields(storm_metrics, monkeypatch):
    # The sockets a failed aiohttp connect tried become the snapshot's
    # connection fields; a fault only counted into its key must not build them.
    from seedance_otel.instrumentation import connect_attempts

    built: list[object] = []
    fields_of = connect_attempts.fields_of

    def counted_fields_of(*args: Any) -> Any:
        built.append(fields_of(*args))
        return built[-1]

    monkeypatch.setattr(connect_attempts, "fields_of", counted_fields_of)
    storm_metrics(collapse_per_s=2)
    port = closed_port()
    assert asyncio.run(aiohttp_storm(f"http://127.0.0.1:{port}/", STORM)) == STORM
    assert seedance_otel.flush(10)
    refused = [s for s in seedance_otel.snapshots() if s.kind is FaultKind.CONNECT_REFUSED]
    full = [s for s in refused if s.url is not None]
    assert faults_in(refused) == STORM
    assert full and all(s.peer_port == port for s in full)
    assert len(built) == len(full) < STORM // 2


def test_counts_left_when_a_storm_stops_ship_as_a_summary(storm_metrics):
    storm_metrics(collapse_per_s=2, export_interval_ms=50)
    with HttpFaultServer(lambda info: Action.RST) as server:
        failures = asyncio.run(httpx_storm(server.url("/"), 30))
    assert failures == 30
    # No further fault comes: the shipper's thread turns the owed counts into
    # a summary once the key has been quiet for a window (bounded wait).
    deadline_polls = 200
    while seedance_otel.stats()["collapse_pending"] and deadline_polls:
        deadline_polls -= 1
        asyncio.run(asyncio.sleep(0.05))
    assert seedance_otel.stats()["collapse_pending"] == 0
    resets = [s for s in seedance_otel.snapshots() if s.kind is FaultKind.CONNECTION_RESET]
    assert faults_in(resets) == 30
    summary = resets[-1]
    assert summary.collapsed_count and summary.collapsed_since_ns
    assert summary.collapsed_since_ns <= summary.timestamp_ns
    # It stands for faults whose details were never recorded: it claims none.
    assert summary.trace_id is None and summary.connection_age_s is None
    assert summary.peer_port is None and summary.url is None
    assert summary.server_port is not None and summary.library == "httpx"


def test_collapsing_off_records_every_fault(storm_metrics):
    storm_metrics(collapse_per_s=0)
    with HttpFaultServer(lambda info: Action.RST) as server:
        asyncio.run(httpx_storm(server.url("/"), 40))
    resets = [s for s in seedance_otel.snapshots() if s.kind is FaultKind.CONNECTION_RESET]
    assert len(resets) == 40
    assert not any(s.collapsed_count for s in resets)
    assert seedance_otel.stats()["collapsed"] == 0


def _template(port: int) -> Snapshot:
    return Snapshot(
        kind=FaultKind.CONNECTION_RESET,
        timestamp_ns=1,
        library="httpx",
        phase="request",
        error_type="httpx.ReadError",
        error_message="",
        server_address="api.example.com",
        server_port=port,
        trace_id="0" * 31 + "1",
        span_id="0" * 15 + "1",
        trace_sampled=True,
        connection_idle_s=3.0,
        peer_addresses_tried=("127.0.0.7:443", "127.0.0.8:443"),
    )


def test_windows_roll_and_counts_ride_on_the_next_full_snapshot():
    collapser = Collapser(per_key_per_s=3)
    key = ("api.example.com", 443, "connection_reset", "httpx", "request", "httpx.ReadError")
    t0 = 5 * WINDOW_NS
    admitted = [collapser.admit(key, t0 + i, 1000 + i) for i in range(10)]
    assert [a is not None for a in admitted] == [True] * 3 + [False] * 7
    assert all(a is not None and a.count == 0 for a in admitted[:3])
    assert (collapser.pending, collapsed := collapser.collapsed) == (7, 0), collapsed
    carried = collapser.admit(key, t0 + WINDOW_NS, 5000)
    assert carried is not None and (carried.count, carried.since_ns) == (7, 1003)
    assert (collapser.pending, collapser.collapsed) == (0, 7)
    # Another key has its own budget.
    other = (*key[:5], "httpx.ConnectError")
    assert collapser.admit(other, t0 + WINDOW_NS, 5001) is not None


def test_summaries_wait_for_a_quiet_window_unless_flushing():
    collapser = Collapser(per_key_per_s=1)
    key = ("api.example.com", 443, "connection_reset", "httpx", "request", "httpx.ReadError")
    assert collapser.admit(key, 0, 10) is not None
    collapser.remember(key, _template(443))
    for i in range(4):
        assert collapser.admit(key, 1 + i, 11 + i) is None
    assert collapser.summaries(WINDOW_NS // 2) == []  # still storming
    [summary] = collapser.summaries(4 + WINDOW_NS)
    assert (summary.collapsed_count, summary.collapsed_since_ns, summary.timestamp_ns) == (
        3,
        11,
        14,
    )
    assert summary.trace_id is None and summary.connection_idle_s is None
    # Nor the trace's flag or the addresses one connect tried.
    assert summary.trace_sampled is None and summary.peer_addresses_tried is None
    assert (collapser.pending, collapser.collapsed) == (0, 3)
    assert collapser.admit(key, 5, 20) is None
    [flushed] = collapser.summaries(6, all_pending=True)
    assert flushed.collapsed_count is None and flushed.timestamp_ns == 20


def test_tracked_keys_are_bounded():
    collapser = Collapser(per_key_per_s=1, max_keys=8)
    keys = [(f"h{i}", 443, "connection_reset", "httpx", "request", "x") for i in range(20)]
    for key in keys:
        collapser.admit(key, 0, 0)
    # Past the bound new keys are not rate-limited (never silently dropped).
    assert all(collapser.admit(key, 1, 1) is not None for key in keys[8:])
    assert len(collapser._keys) == 8


def test_diagnosis_weighs_each_snapshot_by_the_faults_it_stands_for():
    from snapshot_factory import make_snapshot

    refused = [
        make_snapshot(FaultKind.CONNECT_REFUSED, phase="connect", errno=111, collapsed_count=10),
        make_snapshot(FaultKind.CONNECT_REFUSED, phase="connect", errno=111),
    ]
    [finding] = seedance_otel.diagnose(refused, peer_stats={})
    assert finding.code == "connect_refused"
    assert finding.params["count"] == 12
    assert finding.evidence["count"] == 12
    assert "refused 12 connections" in finding.summary


def test_counts_given_back_ride_on_the_next_carrier():
    collapser = Collapser(per_key_per_s=1)
    key = ("api.example.com", 443, "connection_reset", "httpx", "request", "httpx.ReadError")
    assert collapser.admit(key, 0, 10) is not None
    for i in range(3):
        assert collapser.admit(key, 1 + i, 11 + i) is None
    carried = collapser.admit(key, WINDOW_NS, 20)
    assert carried is not None and carried.count == 3
    # Its snapshot could not be built: the three are owed again, from 11.
    collapser.give_back(key, carried)
    assert (collapser.pending, collapser.collapsed) == (3, 0)
    assert collapser.admit(key, WINDOW_NS + 1, 21) is None  # the window's one is used
    again = collapser.admit(key, 2 * WINDOW_NS, 30)
    assert again is not None and (again.count, again.since_ns) == (4, 11)
    assert (collapser.pending, collapser.collapsed) == (0, 4)


def test_a_closed_collapser_counts_nothing():
    collapser = Collapser(per_key_per_s=1)
    key = ("api.example.com", 443, "connection_reset", "httpx", "request", "httpx.ReadError")
    assert collapser.admit(key, 0, 10) is not None
    assert collapser.admit(key, 1, 11) is None
    collapser.close()
    # Past the rate, yet a full snapshot: nothing may be owed after the last summaries.
    assert collapser.admit(key, 2, 12) == Carried(0, 0)
    assert collapser.pending == 1  # what was owed before is still owed


def test_a_carrier_that_fails_to_build_leaves_its_counts_owed(storm_metrics, monkeypatch):
    # A full snapshot reads the request's URL; if that fails (a hook's bug,
    # reported as an internal error), that one fault is lost, but the faults
    # collapsed into it must not be lost with it.
    from seedance_otel import _collapse
    from seedance_otel._redact import redact_url as redact

    monkeypatch.setattr(_collapse, "WINDOW_NS", 20_000_000)  # windows of 20 ms
    calls = [0]

    def failing_second_time(url: str) -> str:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("a reader's bug")
        return redact(url)

    monkeypatch.setattr("seedance_otel._capture.redact_url", failing_second_time)
    reader = storm_metrics(collapse_per_s=1, strict=False)
    errors_before = seedance_otel.stats()["internal_errors"]

    async def storm(url: str) -> int:
        failures = 0
        async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for round_ in range(4):  # bounded: 4 rounds of 10 faults, a window apart
                for _ in range(10):
                    try:
                        await client.get(url)
                    except httpx.HTTPError:
                        failures += 1
                await asyncio.sleep(0.05 if round_ < 3 else 0)
        return failures

    with HttpFaultServer(lambda info: Action.RST) as server:
        attempts = asyncio.run(storm(server.url("/")))
    assert attempts == 40
    assert seedance_otel.flush(10)
    stats = seedance_otel.stats()
    assert stats["internal_errors"] - errors_before == 1
    assert stats["collapse_pending"] == 0
    resets = [s for s in seedance_otel.snapshots() if s.kind is FaultKind.CONNECTION_RESET]
    # Every fault but the one whose snapshot failed, in snapshots and in the counter.
    assert faults_in(resets) == attempts - 1
    assert stats["captured"] + stats["collapsed"] == attempts - 1
    assert fault_counter_total(reader) == attempts - 1


def test_a_fault_in_flight_at_uninstrument_is_not_left_owed(storm_metrics, monkeypatch):
    # Another thread is inside capture() when uninstrument() publishes the last
    # summaries: its fault must not be counted into a key nobody will carry.
    import threading

    from seedance_otel import _capture, _runtime
    from seedance_otel._classify import HookFacts, classify
    from seedance_otel.instrumentation import asyncio_sockets

    def fault() -> None:
        _capture.capture(
            _capture.FaultContext(
                library=asyncio_sockets.LIBRARY,
                exc=ConnectionResetError(104, "Connection reset by peer"),
                facts=HookFacts(phase="request"),
                server_address="127.0.0.1",
                server_port=9,
            )
        )

    storm_metrics(collapse_per_s=1)
    runtime = _runtime.RUNTIME
    assert runtime is not None
    fault()  # the window's one full snapshot: the next is counted
    entered, release = threading.Event(), threading.Event()

    def held_classify(*args: Any) -> Any:
        entered.set()
        assert release.wait(timeout=10)
        return classify(*args)

    monkeypatch.setattr("seedance_otel._capture.classify", held_classify)
    thread = threading.Thread(target=fault)
    thread.start()
    try:
        assert entered.wait(timeout=10)
        seedance_otel.uninstrument()
    finally:
        release.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    stats = runtime.stats()
    assert stats["collapse_pending"] == 0
    # Both faults are snapshots, each settled: shipped, or after shutdown.
    assert stats["captured"] == 2 and stats["collapsed"] == 0
    assert stats["exported"] + stats["dropped"] + stats["export_failed"] == 2
    assert stats["pending"] == 0
    assert runtime.metrics is not None
    assert sum(runtime.metrics.fault_counts().values()) == 2
