"""Metrics through the OpenTelemetry metrics API, exported like the application's own.

Instrument names (OTel, then the Prometheus name the collector's / the
Prometheus exporter's translation produces):

* ``seedance.connection.faults`` counter ``{fault}`` by ``seedance.fault.kind``,
  ``seedance.library``, ``server.address``, ``error.type`` (and
  ``dns.question.name`` for ``dns_timeout`` / ``dns_error``)
  -> ``seedance_connection_faults_total``
* ``seedance.connection.idle_before_fault`` histogram ``s`` by kind, library,
  ``server.address``; buckets that resolve common idle timeouts
  -> ``seedance_connection_idle_before_fault_seconds_bucket``
* ``seedance.tls.alpn.mismatches`` counter ``{mismatch}`` by
  ``seedance.tls.alpn.offered`` (``string[]``, as on the log record),
  ``tls.next_protocol``, ``server.address``, ``seedance.fault.kind``
  -> ``seedance_tls_alpn_mismatches_total``
* ``seedance.snapshot.exported`` counter ``{snapshot}``: every snapshot once
  its fate is settled, ``error.type`` absent when the exporter took it, else
  why not (``export_failed``, ``ring_overwrite``, ``after_shutdown``,
  ``exporter_none``) -> ``seedance_snapshot_exported_total``; and
  ``seedance.snapshot.queue.size`` / ``.queue.capacity`` (the ring), so
  ``captured == sum(exported) + queue.size`` exactly. This follows the SDK
  self-observability pattern of the semantic conventions
  (``otel.sdk.exporter.log.exported``, ``otel.sdk.processor.log.queue.size``).
* ``http.client.open_connections`` ``{connection}`` by
  ``http.connection.state`` (idle/active), ``server.address``,
  ``server.port``, ``network.protocol.version``
  -> ``http_client_open_connections``; ``http.client.connection.duration``
  histogram ``s`` -> ``http_client_connection_duration_seconds_bucket``.
  aiohttp and httpx connections only.
* ``seedance.asyncio.open_connections`` / ``seedance.asyncio.connection.duration``:
  the same for plain asyncio connections (Redis, databases, websockets),
  which are not HTTP.
* ``dns.lookup.duration`` histogram ``s`` by ``dns.question.name`` (and
  ``error.type`` on failure: ``host_not_found``, ``timeout``, ...)
  -> ``dns_lookup_duration_seconds_bucket``

Unknown values are left out, never sent as ``""`` or ``0``. Nothing here runs
per request: fault counts are kept per snapshot, connection duration per
closed connection, DNS per lookup, and the open-connection and snapshot counts
are observed (callbacks at collection time).

``seedance.connection.faults`` is an observable counter over counts kept
here, exact per fault: the SDK's synchronous ``Counter.add`` cleans and
hashes the attributes on every call (about 80,000 instructions under
valgrind, more than the rest of a capture), while keeping the count here
(the series key, a lock, a dict) costs a few thousand. Past
:data:`FAULT_SERIES_KEPT` attribute sets, further sets are counted under
``otel.metric.overflow``, as the SDK's own cardinality limit does. (Being
observed, the counter carries no exemplars; each snapshot carries its
trace instead.) After ``uninstrument()`` the counter keeps reporting its
last totals, as an SDK counter does, and a ``Metrics`` on the same meter
provider counts on from them.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .._connection import IDLE_BUCKETS_S, ConnectionHistory
from .._dns import DnsProbe
from .._ring import Accounting
from .._snapshot import FaultKind, ResetContextSnapshot
from .._version import __version__
from .attributes import fault_error_type, protocol_version

__all__ = [
    "ALPN_MISMATCHES",
    "ASYNCIO_CONNECTION_DURATION",
    "ASYNCIO_OPEN_CONNECTIONS",
    "CONNECTION_DURATION",
    "DNS_LOOKUP_DURATION",
    "EXPORTED",
    "EXPORT_FAILED",
    "FAULTS",
    "FAULT_SERIES_KEPT",
    "IDLE_BEFORE_FAULT",
    "OPEN_CONNECTIONS",
    "QUEUE_CAPACITY",
    "QUEUE_SIZE",
    "Metrics",
]

FAULTS = "seedance.connection.faults"
IDLE_BEFORE_FAULT = "seedance.connection.idle_before_fault"
EXPORTED = "seedance.snapshot.exported"
QUEUE_SIZE = "seedance.snapshot.queue.size"
QUEUE_CAPACITY = "seedance.snapshot.queue.capacity"
ALPN_MISMATCHES = "seedance.tls.alpn.mismatches"
OPEN_CONNECTIONS = "http.client.open_connections"
CONNECTION_DURATION = "http.client.connection.duration"
ASYNCIO_OPEN_CONNECTIONS = "seedance.asyncio.open_connections"
ASYNCIO_CONNECTION_DURATION = "seedance.asyncio.connection.duration"
DNS_LOOKUP_DURATION = "dns.lookup.duration"

EXPORT_FAILED = "export_failed"
"""``error.type`` of snapshots the exporter failed to deliver."""

ASYNCIO_LIBRARY = "asyncio"
"""``ConnectionHistory.library`` of plain asyncio connections (not HTTP)."""

# Semconv's advice for dns.lookup.duration (the HTTP request-duration buckets).
_DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# Semconv's advice for http.client.connection.duration.
CONNECTION_BUCKETS_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

_DNS_KINDS = (FaultKind.DNS_TIMEOUT, FaultKind.DNS_ERROR)

FAULT_SERIES_KEPT = 2000
"""Attribute sets of ``seedance.connection.faults`` counted apart (the SDK's
default cardinality limit); faults of further sets count under
``otel.metric.overflow``."""

FaultSeries = tuple[str, str, str | None, str | None, str | None]
"""(kind, library, server.address, error.type, dns.question.name)."""

_OVERFLOW: FaultSeries = ("", "", None, None, None)
"""The series every fault past :data:`FAULT_SERIES_KEPT` sets is counted in."""

_ATTRIBUTE_SETS_KEPT = 256
"""Peers whose duration attributes are kept; then the memory starts afresh."""
_PRUNE_AT = 4096
"""Entries in the open-connection table before dead references are looked for."""

AccountingSource = Callable[[], Accounting]
"""What the snapshot counts are read from: the runtime's ``ring.accounting``."""

ConnectionKey = tuple[bool, str, str | None, int | None, str, str | None]
"""(plain asyncio?, state, server.address, server.port, library, protocol version)"""


class Metrics:
    """The instruments, and the listeners that feed them.

    ``accounting`` is passed in by the runtime that owns the ring; nothing here
    reads the runtime itself.
    """

    def __init__(
        self, accounting: AccountingSource, *, capacity: int, meter_provider: Any = None
    ) -> None:
        self._accounting = accounting
        self._capacity = capacity
        self._meter_provider = meter_provider
        self._duration_attributes: dict[
            tuple[str | None, int | None, str | None, str], dict[str, Any]
        ] = {}
        """The attributes of each peer's connection durations, built once
        (per closed connection otherwise); never changed once handed out."""
        self._fault_counts: dict[FaultSeries, int] = _counts_carried_on(meter_provider)
        """Faults so far by series, read at collection time; a re-instrumented
        process counts on from where the last ``Metrics`` on the same meter
        provider stopped (a cumulative counter that fell back to 0 would read
        as a reset)."""
        self._fault_lock = threading.Lock()
        """Keeps the counts exact when faults of several threads add at once."""
        meter = otel_metrics.get_meter("seedance_otel", __version__, meter_provider=meter_provider)
        meter.create_observable_counter(
            FAULTS,
            callbacks=[_observe_faults],
            unit="{fault}",
            description="Connection faults recorded, by kind and peer.",
        )
        self._idle = meter.create_histogram(
            IDLE_BEFORE_FAULT,
            unit="s",
            description="How long a reused connection sat idle before it failed "
            "(or before the peer closed it). A cliff shows the peer's idle timeout.",
            explicit_bucket_boundaries_advisory=list(IDLE_BUCKETS_S),
        )
        self._connection_duration = meter.create_histogram(
            CONNECTION_DURATION,
            unit="s",
            description="Lifetime of HTTP client connections.",
            explicit_bucket_boundaries_advisory=list(CONNECTION_BUCKETS_S),
        )
        self._asyncio_duration = meter.create_histogram(
            ASYNCIO_CONNECTION_DURATION,
            unit="s",
            description="Lifetime of plain asyncio connections (Redis, databases, websockets).",
            explicit_bucket_boundaries_advisory=list(CONNECTION_BUCKETS_S),
        )
        self._dns = meter.create_histogram(
            DNS_LOOKUP_DURATION,
            unit="s",
            description="Duration of name lookups made to open connections.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS_S),
        )
        self._alpn = meter.create_counter(
            ALPN_MISMATCHES,
            unit="{mismatch}",
            description="ALPN mismatches by what the client offered and the server selected.",
        )
        meter.create_observable_counter(
            EXPORTED,
            callbacks=[_observe_exported],
            unit="{snapshot}",
            description="Snapshots whose fate is settled: exported (no error.type), "
            "or failed / dropped, with the reason in error.type.",
        )
        meter.create_observable_up_down_counter(
            QUEUE_SIZE,
            callbacks=[_observe_queue_size],
            unit="{snapshot}",
            description="Snapshots captured and not settled yet (in the ring or in flight).",
        )
        meter.create_observable_up_down_counter(
            QUEUE_CAPACITY,
            callbacks=[_observe_queue_capacity],
            unit="{snapshot}",
            description="Snapshots the ring holds before it overwrites unread ones.",
        )
        meter.create_observable_up_down_counter(
            OPEN_CONNECTIONS,
            callbacks=[_observe_open_connections],
            unit="{connection}",
            description="Open HTTP client connections, idle or active.",
        )
        meter.create_observable_up_down_counter(
            ASYNCIO_OPEN_CONNECTIONS,
            callbacks=[_observe_asyncio_open_connections],
            unit="{connection}",
            description="Open plain asyncio client connections, idle or active.",
        )
        self._connections: dict[int, weakref.ref[ConnectionHistory]] = {}
        """Open connections' histories by ``id``, held weakly: a connection the
        library drops without closing leaves a dead reference, pruned later.
        Plain dict operations (atomic under the GIL): no lock per connection."""
        self._prune_at = _PRUNE_AT
        _make_live(self)

    def reset_after_fork(self) -> None:
        """A child counts its own faults (its parent reports the parent's), under
        a fresh lock (the parent's may have been held by another thread)."""
        self._fault_lock = threading.Lock()
        self._fault_counts = {}

    def retire(self) -> None:
        """Stop reporting observed values (uninstrumented), except the fault
        counter's totals, which stay reported until a new ``Metrics`` takes over."""
        _retire(self)

    # -- listeners -----------------------------------------------------------

    def on_snapshot(self, snapshot: ResetContextSnapshot) -> None:
        kind = snapshot.kind
        series: FaultSeries = (
            # ``_value_``, the member's own attribute: ``value`` is a Python
            # property (two calls on 3.11).
            kind._value_,
            snapshot.library,
            snapshot.server_address or None,
            fault_error_type(snapshot),
            (snapshot.dns_question or None) if kind in _DNS_KINDS else None,
        )
        # A snapshot stands for itself and the storm's faults collapsed into it.
        faults = 1 + (snapshot.collapsed_count or 0)
        counts = self._fault_counts
        with self._fault_lock:
            if series in counts:
                counts[series] += faults
            elif len(counts) < FAULT_SERIES_KEPT:
                counts[series] = faults
            else:
                counts[_OVERFLOW] = counts.get(_OVERFLOW, 0) + faults
        if snapshot.kind is FaultKind.ALPN_MISMATCH or (
            snapshot.kind is FaultKind.CONNECTION_RESET
            and snapshot.alpn_offered is not None
            and snapshot.alpn_negotiated is None
            and snapshot.tls_version is not None
            and not snapshot.connection_reused
        ):
            self._alpn.add(faults, _alpn_attributes(snapshot))
        if snapshot.connection_idle_s is not None and snapshot.kind in (
            FaultKind.CONNECTION_RESET,
            FaultKind.PEER_CLOSED_IDLE,
        ):
            attributes = _fault_attributes(series)
            attributes.pop("error.type", None)
            self._idle.record(snapshot.connection_idle_s, attributes)

    def fault_counts(self) -> dict[FaultSeries, int]:
        """Faults so far by series (a copy)."""
        with self._fault_lock:
            return dict(self._fault_counts)

    def on_connection_opened(self, history: ConnectionHistory) -> None:
        connections = self._connections
        if len(connections) >= self._prune_at:
            self._prune()
        connections[id(history)] = weakref.ref(history)

    def on_connection_closed(self, history: ConnectionHistory, age_s: float) -> None:
        # An entry under this id is this history's (ids are unique among live
        # objects), or a dead one's, which may go too.
        self._connections.pop(id(history), None)
        key = (
            history.server_address,
            history.server_port,
            history.alpn_negotiated,
            history.library,
        )
        attributes = self._duration_attributes.get(key)
        if attributes is None:
            attributes = _peer_attributes(
                history.server_address,
                history.server_port,
                protocol_version(history.alpn_negotiated),
            )
            attributes["seedance.library"] = history.library
            if len(self._duration_attributes) >= _ATTRIBUTE_SETS_KEPT:
                self._duration_attributes.clear()
            self._duration_attributes[key] = attributes
        histogram = (
            self._asyncio_duration
            if history.library == ASYNCIO_LIBRARY
            else self._connection_duration
        )
        histogram.record(age_s, attributes)

    def on_dns_lookup(self, probe: DnsProbe) -> None:
        attributes = {"dns.question.name": probe.question}
        if probe.error_type is not None:
            attributes["error.type"] = probe.error_type
        self._dns.record(probe.duration_s(), attributes)

    # -- read at collection time -------------------------------------------------

    def accounting(self) -> Accounting:
        return self._accounting()

    def capacity(self) -> int:
        return self._capacity

    def _live_histories(self) -> list[ConnectionHistory]:
        """The open connections' histories; dead references are dropped."""
        live = []
        for key, ref in list(self._connections.items()):
            history = ref()
            if history is not None:
                live.append(history)
            elif self._connections.get(key) is ref:  # not replaced meanwhile
                self._connections.pop(key, None)
        return live

    def _prune(self) -> None:
        """Bound the table: drop dead references; if most are live, wait longer next time."""
        live = len(self._live_histories())
        self._prune_at = max(_PRUNE_AT, 2 * live)

    def open_connection_counts(self) -> dict[ConnectionKey, int]:
        counts: dict[ConnectionKey, int] = {}
        for history in self._live_histories():
            key: ConnectionKey = (
                history.library == ASYNCIO_LIBRARY,
                "active" if history.active else "idle",
                history.server_address,
                history.server_port,
                history.library,
                protocol_version(history.alpn_negotiated),
            )
            counts[key] = counts.get(key, 0) + 1
        return counts


def _peer_attributes(address: str | None, port: int | None, version: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if address:
        attributes["server.address"] = address
    if port:
        attributes["server.port"] = port
    if version is not None:
        attributes["network.protocol.version"] = version
    return attributes


def _fault_attributes(series: FaultSeries) -> dict[str, Any]:
    if series is _OVERFLOW:
        return {"otel.metric.overflow": True}
    kind, library, address, error_type, question = series
    attributes: dict[str, Any] = {"seedance.fault.kind": kind, "seedance.library": library}
    if address is not None:
        attributes["server.address"] = address
    if error_type is not None:
        attributes["error.type"] = error_type
    if question is not None:
        attributes["dns.question.name"] = question
    return attributes


def _alpn_attributes(snapshot: ResetContextSnapshot) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "seedance.tls.alpn.offered": list(snapshot.alpn_offered or ()),
        "seedance.fault.kind": snapshot.kind.value,
    }
    if snapshot.alpn_negotiated:
        attributes["tls.next_protocol"] = snapshot.alpn_negotiated
    if snapshot.server_address:
        attributes["server.address"] = snapshot.server_address
    return attributes


# -- observed at collection time ------------------------------------------------
#
# Module-level callbacks that read the live Metrics: the SDK hands back the
# instrument registered first for a name and ignores later callbacks, so
# callbacks bound to one Metrics would keep reporting it after uninstrument()
# and instrument() again. The live one is held weakly (it never keeps a
# runtime alive) and set by the Metrics itself, so this module never reads
# the runtime.

_live: weakref.ref[Metrics] | None = None


class _RetiredFaults:
    """The fault counts of the last retired ``Metrics``: still reported, as
    an SDK counter keeps reporting its total when nothing adds to it any more
    (faults counted since the last collection are not lost at
    ``uninstrument()``), and the start of the next ``Metrics`` on the same
    meter provider. Only its counts and their lock are held, not the
    ``Metrics`` (which would keep the runtime and its ring alive)."""

    __slots__ = ("counts", "lock", "meter_provider", "pid")

    def __init__(self, metrics: Metrics) -> None:
        self.pid = os.getpid()
        self.meter_provider = metrics._meter_provider
        self.lock = metrics._fault_lock
        self.counts = metrics._fault_counts

    def copy(self) -> dict[FaultSeries, int] | None:
        """The counts, or ``None`` in a forked child (they are its parent's)."""
        if self.pid != os.getpid():
            return None
        with self.lock:
            return dict(self.counts)


_retired: _RetiredFaults | None = None


def _make_live(metrics: Metrics) -> None:
    global _live, _retired  # noqa: PLW0603
    _live = weakref.ref(metrics)
    _retired = None  # reported by the live one from now on (carried on, or not)


def _retire(metrics: Metrics) -> None:
    global _live, _retired  # noqa: PLW0603
    if _live is not None and _live() is metrics:
        _live = None
        _retired = _RetiredFaults(metrics)


def _counts_carried_on(meter_provider: Any) -> dict[FaultSeries, int]:
    """The retired counts a new ``Metrics`` on the same meter provider starts
    from (empty for another provider, whose counter starts at 0 anyway)."""
    retired = _retired
    if retired is None or retired.meter_provider is not meter_provider:
        return {}
    return retired.copy() or {}


def _current() -> Metrics | None:
    ref = _live
    return ref() if ref is not None else None


def _observe_faults(options: CallbackOptions) -> Iterable[Observation]:
    metrics = _current()
    if metrics is not None:
        counts: dict[FaultSeries, int] | None = metrics.fault_counts()
    else:
        retired = _retired
        counts = retired.copy() if retired is not None else None
    for series, count in (counts or {}).items():
        yield Observation(count, _fault_attributes(series))


def _observe_exported(options: CallbackOptions) -> Iterable[Observation]:
    metrics = _current()
    if metrics is None:
        return
    accounting = metrics.accounting()
    yield Observation(accounting.exported)
    yield Observation(accounting.export_failed, {"error.type": EXPORT_FAILED})
    for reason, count in accounting.dropped_by_reason.items():
        yield Observation(count, {"error.type": reason})


def _observe_queue_size(options: CallbackOptions) -> Iterable[Observation]:
    metrics = _current()
    if metrics is not None:
        yield Observation(metrics.accounting().pending)


def _observe_queue_capacity(options: CallbackOptions) -> Iterable[Observation]:
    metrics = _current()
    if metrics is not None:
        yield Observation(metrics.capacity())


def _observe_connections(plain_asyncio: bool) -> Iterable[Observation]:
    metrics = _current()
    if metrics is None:
        return
    for key, count in metrics.open_connection_counts().items():
        is_asyncio, state, address, port, library, version = key
        if is_asyncio is not plain_asyncio:
            continue
        attributes = _peer_attributes(address, port, version)
        attributes["seedance.library"] = library
        attributes["http.connection.state" if not is_asyncio else "seedance.connection.state"] = (
            state
        )
        yield Observation(count, attributes)


def _observe_open_connections(options: CallbackOptions) -> Iterable[Observation]:
    return _observe_connections(plain_asyncio=False)


def _observe_asyncio_open_connections(options: CallbackOptions) -> Iterable[Observation]:
    return _observe_connections(plain_asyncio=True)
