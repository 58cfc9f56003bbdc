"""Process-wide state while instrumented: settings, ring, peer records, listeners.

``RUNTIME`` is ``None`` when not instrumented; hooks check it only on the
fault path. Listeners (span events, metrics, the shipper's wake-up) are called
after a snapshot is in the ring; each is guarded separately so one failing
listener cannot stop the others or reach the application.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._config import Settings
from ._connection import ConnectionHistory, PeerRegistry, PeerStats
from ._guard import internal_error_count, report_internal_error
from ._ring import RingBuffer
from ._snapshot import ResetContextSnapshot
from .exporting.metrics import Metrics

__all__ = ["RUNTIME", "Runtime", "connection_closed", "connection_opened", "peer_for"]

Listener = Callable[[ResetContextSnapshot], None]


class Runtime:
    """Everything that lives between ``instrument()`` and ``uninstrument()``."""

    def __init__(self, settings: Settings, providers: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.providers = providers or {}
        """OTel providers an instrumentor was given (``meter_provider``, ...)."""
        self.ring: RingBuffer[ResetContextSnapshot] = RingBuffer(settings.ring_size)
        self.peers = PeerRegistry()
        self.listeners: list[Listener] = []
        self.notes: list[str] = []
        """Human-readable limits found at start (e.g. uvloop), reported once."""
        self.metrics: Metrics | None = None
        if settings.metrics:
            self.metrics = Metrics(self, self.providers.get("meter_provider"))
            self.listeners.append(self.metrics.on_snapshot)

    def publish(self, snapshot: ResetContextSnapshot) -> None:
        self.ring.append(snapshot)
        for listener in self.listeners:
            try:
                listener(snapshot)
            except Exception:
                report_internal_error(f"listener {getattr(listener, '__qualname__', listener)}")

    def stats(self) -> dict[str, int]:
        acct = self.ring.accounting()
        out: dict[str, int] = {
            "captured": acct.captured,
            "exported": acct.exported,
            "dropped": acct.dropped,
            "export_failed": acct.export_failed,
            "pending": acct.pending,
            "ring_capacity": self.ring.capacity,
            "internal_errors": internal_error_count(),
        }
        for reason, count in sorted(acct.dropped_by_reason.items()):
            out[f"dropped_{reason}"] = count
        return out

    def flush(self, timeout_s: float) -> bool:
        """Until a shipper is attached nothing is exported: true only when nothing is pending."""
        return self.ring.accounting().pending == 0

    def peer_stats(self) -> dict[tuple[str, int], dict[str, Any]]:
        return self.peers.snapshot()


RUNTIME: Runtime | None = None


def connection_opened(history: ConnectionHistory) -> None:
    """A new connection has a history (per new connection, not per request)."""
    runtime = RUNTIME
    if runtime is not None and runtime.metrics is not None:
        runtime.metrics.on_connection_opened(history)


def connection_closed(history: ConnectionHistory) -> None:
    """A connection with a history closed, whoever closed it."""
    if history.closed:
        return
    history.closed = True
    runtime = RUNTIME
    if runtime is not None and runtime.metrics is not None:
        runtime.metrics.on_connection_closed(history, time.monotonic() - history.established_at)


def peer_for(host: str | None, port: int | None) -> PeerStats:
    """The peer record for ``(host, port)``; a throwaway one when not instrumented."""
    runtime = RUNTIME
    if runtime is None:
        return PeerStats()
    return runtime.peers.get(host, port)
