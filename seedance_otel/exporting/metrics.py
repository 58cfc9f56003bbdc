"""Metrics through the OpenTelemetry metrics API, exported like the application's own.

Instrument names (OTel, then the Prometheus name the collector's / the
Prometheus exporter's translation produces):

* ``seedance.connection.faults`` counter ``{fault}`` by ``seedance.fault.kind``,
  ``seedance.library``, ``server.address``, ``error.type``
  -> ``seedance_connection_faults_total``
* ``seedance.connection.idle_before_fault`` histogram ``s`` by kind, library,
  ``server.address``; buckets that resolve common idle timeouts
  -> ``seedance_connection_idle_before_fault_seconds_bucket``
* ``seedance.snapshots.exported`` / ``seedance.snapshots.dropped`` (by
  ``seedance.drop.reason``) / ``seedance.snapshots.export_failed``
  -> ``seedance_snapshots_exported_total`` ...
* ``seedance.tls.alpn.mismatches`` counter by ``seedance.tls.alpn.offered``
  (comma-joined, ``(none)`` when nothing was offered), ``tls.next_protocol``
  (``(none)``), ``server.address`` -> ``seedance_tls_alpn_mismatches_total``
* ``http.client.open_connections`` ``{connection}`` by
  ``http.connection.state`` (idle/active), ``server.address``, ``server.port``
  -> ``http_client_open_connections``
* ``http.client.connection.duration`` histogram ``s``
  -> ``http_client_connection_duration_seconds_bucket``
* ``dns.lookup.duration`` histogram ``s`` by ``dns.question.name`` (and
  ``error.type`` on failure) -> ``dns_lookup_duration_seconds_bucket``

Nothing here runs per request: fault counters run per snapshot, connection
duration per closed connection, DNS per lookup, and the open-connection and
snapshot counts are observed (callbacks at collection time).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .._connection import IDLE_BUCKETS_S, ConnectionHistory
from .._dns import DnsProbe
from .._snapshot import FaultKind, ResetContextSnapshot
from .._version import __version__

if TYPE_CHECKING:
    from .._runtime import Runtime

__all__ = [
    "ALPN_MISMATCHES",
    "CONNECTION_DURATION",
    "DNS_LOOKUP_DURATION",
    "DROPPED",
    "EXPORTED",
    "EXPORT_FAILED",
    "FAULTS",
    "IDLE_BEFORE_FAULT",
    "OPEN_CONNECTIONS",
    "Metrics",
]

FAULTS = "seedance.connection.faults"
IDLE_BEFORE_FAULT = "seedance.connection.idle_before_fault"
EXPORTED = "seedance.snapshots.exported"
DROPPED = "seedance.snapshots.dropped"
EXPORT_FAILED = "seedance.snapshots.export_failed"
ALPN_MISMATCHES = "seedance.tls.alpn.mismatches"
OPEN_CONNECTIONS = "http.client.open_connections"
CONNECTION_DURATION = "http.client.connection.duration"
DNS_LOOKUP_DURATION = "dns.lookup.duration"

# Semconv's advice for http.client.connection.duration and dns.lookup.duration.
_DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_CONNECTION_BUCKETS_S = (0.01, 0.1, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    """The instruments, and the listeners that feed them."""

    def __init__(self, meter_provider: Any = None) -> None:
        meter = otel_metrics.get_meter("seedance_otel", __version__, meter_provider=meter_provider)
        self._faults = meter.create_counter(
            FAULTS, unit="{fault}", description="Connection faults recorded, by kind and peer."
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
            explicit_bucket_boundaries_advisory=list(_CONNECTION_BUCKETS_S),
        )
        self._dns = meter.create_histogram(
            DNS_LOOKUP_DURATION,
            unit="s",
            description="Duration of name lookups made to open connections.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS_S),
        )
        self._alpn = meter.create_counter(
            ALPN_MISMATCHES,
            unit="{fault}",
            description="ALPN mismatches by what the client offered and the server selected.",
        )
        meter.create_observable_counter(
            EXPORTED,
            callbacks=[_observe_exported],
            unit="{snapshot}",
            description="Snapshots handed to the exporter successfully.",
        )
        meter.create_observable_counter(
            EXPORT_FAILED,
            callbacks=[_observe_export_failed],
            unit="{snapshot}",
            description="Snapshots the exporter failed to deliver.",
        )
        meter.create_observable_counter(
            DROPPED,
            callbacks=[_observe_dropped],
            unit="{snapshot}",
            description="Snapshots dropped before export, by reason.",
        )
        meter.create_observable_up_down_counter(
            OPEN_CONNECTIONS,
            callbacks=[_observe_open_connections],
            unit="{connection}",
            description="Open HTTP client connections, idle or active.",
        )
        self._connections: weakref.WeakSet[ConnectionHistory] = weakref.WeakSet()
        self._lock = threading.Lock()

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    # -- listeners -----------------------------------------------------------

    def on_snapshot(self, snapshot: ResetContextSnapshot) -> None:
        attributes = {
            "seedance.fault.kind": snapshot.kind.value,
            "seedance.library": snapshot.library,
            "server.address": snapshot.server_address or "",
            "error.type": snapshot.error_type,
        }
        self._faults.add(1, attributes)
        if snapshot.kind is FaultKind.ALPN_MISMATCH or (
            snapshot.kind is FaultKind.CONNECTION_RESET
            and snapshot.alpn_offered is not None
            and snapshot.alpn_negotiated is None
            and snapshot.tls_version is not None
            and not snapshot.connection_reused
        ):
            self._alpn.add(
                1,
                {
                    "seedance.tls.alpn.offered": ",".join(snapshot.alpn_offered or ()) or "(none)",
                    "tls.next_protocol": snapshot.alpn_negotiated or "(none)",
                    "server.address": snapshot.server_address or "",
                    "seedance.fault.kind": snapshot.kind.value,
                },
            )
        if snapshot.connection_idle_s is not None and snapshot.kind in (
            FaultKind.CONNECTION_RESET,
            FaultKind.PEER_CLOSED_IDLE,
        ):
            del attributes["error.type"]
            self._idle.record(snapshot.connection_idle_s, attributes)

    def on_connection_opened(self, history: ConnectionHistory) -> None:
        with self._lock:
            self._connections.add(history)

    def on_connection_closed(self, history: ConnectionHistory, age_s: float) -> None:
        with self._lock:
            self._connections.discard(history)
        self._connection_duration.record(
            age_s,
            {
                "server.address": history.server_address or "",
                "server.port": history.server_port or 0,
                "seedance.library": history.library,
            },
        )

    def on_dns_lookup(self, probe: DnsProbe) -> None:
        attributes = {"dns.question.name": probe.question}
        if probe.error_type is not None:
            attributes["error.type"] = probe.error_type
        self._dns.record(probe.duration_s(), attributes)

    def open_connection_counts(self) -> dict[tuple[str, str, int, str], int]:
        with self._lock:
            histories = list(self._connections)
        counts: dict[tuple[str, str, int, str], int] = {}
        for history in histories:
            state = "active" if history.active else "idle"
            key = (state, history.server_address or "", history.server_port or 0, history.library)
            counts[key] = counts.get(key, 0) + 1
        return counts


# -- observed at collection time ------------------------------------------------
#
# Module-level callbacks that read the current runtime: the SDK hands back the
# instrument registered first for a name and ignores later callbacks, so
# callbacks bound to one runtime would keep reporting it after uninstrument()
# and instrument() again (and keep it alive).


def _current() -> Runtime | None:
    from .. import _runtime

    return _runtime.RUNTIME


def _observe_exported(options: CallbackOptions) -> Iterable[Observation]:
    runtime = _current()
    if runtime is not None:
        yield Observation(runtime.ring.accounting().exported)


def _observe_export_failed(options: CallbackOptions) -> Iterable[Observation]:
    runtime = _current()
    if runtime is not None:
        yield Observation(runtime.ring.accounting().export_failed)


def _observe_dropped(options: CallbackOptions) -> Iterable[Observation]:
    runtime = _current()
    if runtime is not None:
        for reason, count in runtime.ring.accounting().dropped_by_reason.items():
            yield Observation(count, {"seedance.drop.reason": reason})


def _observe_open_connections(options: CallbackOptions) -> Iterable[Observation]:
    runtime = _current()
    if runtime is None or runtime.metrics is None:
        return
    for (state, address, port, library), count in runtime.metrics.open_connection_counts().items():
        yield Observation(
            count,
            {
                "http.connection.state": state,
                "server.address": address,
                "server.port": port,
                "seedance.library": library,
            },
        )
