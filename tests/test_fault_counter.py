"""``seedance.connection.faults``: observed from counts kept per snapshot, exact per fault."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, Sum

from seedance_otel import FaultKind, ResetContextSnapshot
from seedance_otel._ring import RingBuffer
from seedance_otel.exporting import metrics as metrics_module
from seedance_otel.exporting.metrics import FAULTS, Metrics

from metric_points import attributes, metrics_by_name, number_points
from snapshot_factory import make_snapshot


@contextlib.contextmanager
def metrics_on(provider: MeterProvider) -> Iterator[Metrics]:
    """A live ``Metrics`` on ``provider``, retired on the way out."""
    ring: RingBuffer[ResetContextSnapshot] = RingBuffer(4)
    metrics = Metrics(ring.accounting, capacity=4, meter_provider=provider)
    try:
        yield metrics
    finally:
        metrics.retire()


@pytest.fixture
def sdk() -> Iterator[tuple[Metrics, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        with metrics_on(provider) as metrics:
            yield metrics, reader
    finally:
        provider.shutdown()


def fault_points(reader: InMemoryMetricReader) -> dict[str | None, int]:
    """The counter's value per ``server.address`` (the overflow series under ``None``)."""
    metric = metrics_by_name(reader.get_metrics_data())[FAULTS]
    assert isinstance(metric.data, Sum)
    assert metric.data.is_monotonic
    assert metric.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    out: dict[str | None, int] = {}
    for point in number_points(metric):
        address = attributes(point).get("server.address")
        assert isinstance(point.value, int)
        out[str(address) if address is not None else None] = point.value
    return out


def test_counts_stay_exact_when_threads_add_at_once(sdk):
    metrics, reader = sdk
    threads_n, per_thread = 4, 2_000
    start = threading.Barrier(threads_n)

    def add(carried: int) -> None:
        snapshot = make_snapshot(collapsed_count=carried)
        start.wait(timeout=10)
        for _ in range(per_thread):
            metrics.on_snapshot(snapshot)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(threads_n)]
    # Switch threads as often as the interpreter will. (Under 3.11's GIL a
    # dict's read-add-store is not interrupted, so this cannot show an
    # unguarded count failing there; the lock is for interpreters that can.)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
    finally:
        sys.setswitchinterval(interval)
    # Each snapshot stands for itself and the faults collapsed into it.
    expected = sum(per_thread * (1 + carried) for carried in range(threads_n))
    assert fault_points(reader) == {"api.test": expected}
    metrics.on_snapshot(make_snapshot())
    assert fault_points(reader) == {"api.test": expected + 1}  # cumulative


def test_series_past_the_limit_count_under_overflow(sdk, monkeypatch):
    metrics, reader = sdk
    monkeypatch.setattr(metrics_module, "FAULT_SERIES_KEPT", 2)
    for peer, faults in (("a.test", 1), ("b.test", 2), ("c.test", 3), ("d.test", 4)):
        for _ in range(faults):
            metrics.on_snapshot(make_snapshot(server_address=peer))
    metrics.on_snapshot(make_snapshot(server_address="a.test"))  # a kept series goes on
    assert fault_points(reader) == {"a.test": 2, "b.test": 2, None: 7}
    metric = metrics_by_name(reader.get_metrics_data())[FAULTS]
    [overflow] = [p for p in number_points(metric) if "server.address" not in attributes(p)]
    assert dict(attributes(overflow)) == {"otel.metric.overflow": True}


def test_attributes_are_the_fault_series(sdk):
    metrics, reader = sdk
    metrics.on_snapshot(
        make_snapshot(
            FaultKind.DNS_TIMEOUT,
            library="aiohttp",
            phase="dns",
            error_type="TimeoutError",
            server_address="api.test",
            dns_question="api.test",
        )
    )
    metrics.on_snapshot(make_snapshot(server_address=None, dns_question="ignored.test"))
    metric = metrics_by_name(reader.get_metrics_data())[FAULTS]
    got = sorted(((dict(attributes(p)), p.value) for p in number_points(metric)), key=repr)
    assert got == sorted(
        [
            (
                {
                    "seedance.fault.kind": "dns_timeout",
                    "seedance.library": "aiohttp",
                    "server.address": "api.test",
                    "error.type": "TimeoutError",
                    "dns.question.name": "api.test",
                },
                1,
            ),
            (
                {
                    "seedance.fault.kind": "connection_reset",
                    "seedance.library": "httpx",
                    "error.type": "httpcore.ReadError",
                },
                1,
            ),
        ],
        key=repr,
    )


def test_a_forked_child_counts_only_its_own_faults(sdk):
    metrics, reader = sdk
    for _ in range(3):
        metrics.on_snapshot(make_snapshot())
    metrics.reset_after_fork()  # what the runtime calls in the child
    metrics.on_snapshot(make_snapshot())
    assert fault_points(reader) == {"api.test": 1}


def test_counts_outlive_uninstrument_and_go_on_after_reinstrument(sdk):
    metrics, reader = sdk
    for _ in range(3):
        metrics.on_snapshot(make_snapshot())
    metrics.retire()  # uninstrumented before any collection
    # Still reported, as an SDK counter keeps its total: nothing lost.
    assert fault_points(reader) == {"api.test": 3}
    assert fault_points(reader) == {"api.test": 3}
    with metrics_on(metrics._meter_provider) as again:
        again.on_snapshot(make_snapshot())
        # Counts on: a cumulative counter falling back to 1 would read as a reset.
        assert fault_points(reader) == {"api.test": 4}


def test_another_meter_provider_starts_from_zero(sdk):
    metrics, _reader = sdk
    metrics.on_snapshot(make_snapshot())
    metrics.retire()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        with metrics_on(provider) as other:
            other.on_snapshot(make_snapshot())
            assert fault_points(reader) == {"api.test": 1}
    finally:
        provider.shutdown()


def test_retired_counts_are_not_reported_in_a_forked_child(sdk, monkeypatch):
    metrics, reader = sdk
    metrics.on_snapshot(make_snapshot())
    metrics.retire()
    retired = metrics_module._retired
    assert retired is not None
    monkeypatch.setattr(retired, "pid", retired.pid + 1)  # as seen from a child
    metric = metrics_by_name(reader.get_metrics_data()).get(FAULTS)
    assert metric is None or not list(number_points(metric))
