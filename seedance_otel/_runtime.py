"""Process-wide state while instrumented: settings, ring, peer records, listeners.

``RUNTIME`` is ``None`` when not instrumented; hooks check it only on the
fault path. Listeners (span events, metrics, the shipper's wake-up) are called
after a snapshot is in the ring; each is guarded separately so one failing
listener cannot stop the others or reach the application.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ._collapse import Collapser
from ._config import Settings
from ._connection import ConnectionHistory, PeerRegistry, PeerStats
from ._guard import internal_error_count, report_internal_error
from ._ring import RingBuffer
from ._snapshot import ResetContextSnapshot
from .exporting.metrics import Metrics
from .exporting.shipper import Shipper
from .exporting.sinks import UnavailableSink, make_sink
from .exporting.span_events import add_span_event, span_events_wanted

__all__ = ["RUNTIME", "Runtime", "connection_closed", "open_history"]

Listener = Callable[[ResetContextSnapshot], None]

_logger = logging.getLogger("seedance_otel")


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
            self.metrics = Metrics(
                self.ring.accounting,
                capacity=self.ring.capacity,
                meter_provider=self.providers.get("meter_provider"),
            )
            self.listeners.append(self.metrics.on_snapshot)
        if span_events_wanted(settings.span_events):
            self.listeners.append(add_span_event)
        self.collapser = Collapser(settings.collapse_per_s) if settings.collapse_per_s else None
        self.shipper: Shipper | None = None
        self.pid = os.getpid()
        """The process this runtime ships for; a forked child restarts shipping lazily."""

    def start_shipping(self) -> None:
        """Start the background shipper (also in a forked child, with a new sink).

        A sink that cannot be built (an exporter setting the SDK rejects) must
        not make ``instrument()`` fail: it is replaced by one that counts every
        batch as ``export_failed``, and the reason is logged once.
        """
        try:
            sink = make_sink(self.settings.exporter, self.settings.file)
        except Exception as exc:
            note = (
                f"cannot export snapshots ({type(exc).__name__}: {exc}); they stay in "
                "the ring and are counted as export_failed"
            )
            self.notes.append(note)
            _logger.warning("seedance_otel: %s", note)
            sink = UnavailableSink(str(exc))
        shipper = Shipper(
            self.ring,
            sink,
            batch_size=self.settings.batch_size,
            interval_s=self.settings.export_interval_ms / 1000,
            before_drain=self.publish_summaries if self.collapser is not None else None,
        )
        self.listeners = [
            listener for listener in self.listeners if not _is_shipper_listener(listener)
        ]
        self.listeners.append(shipper.on_snapshot)
        self.shipper = shipper
        shipper.start()

    def publish_summaries(self, *, all_pending: bool = False) -> None:
        """Counts of collapsed faults whose key went quiet (or all, before a
        flush) become summary snapshots: none is left behind."""
        if self.collapser is None:
            return
        for summary in self.collapser.summaries(all_pending=all_pending):
            self.publish(summary)

    def stop_shipping(self, timeout_s: float) -> bool:
        if self.collapser is not None:
            # A fault still inside ``capture`` on another thread must not be
            # counted after the last summaries: it becomes a full snapshot.
            self.collapser.close()
        self.publish_summaries(all_pending=True)
        shipper = self.shipper
        if shipper is None:
            return self.ring.accounting().pending == 0
        return shipper.shutdown(timeout_s)

    def retire_metrics(self) -> None:
        """Uninstrumented: observed metrics stop reporting this runtime (the
        fault counter keeps reporting its totals, as an SDK counter would)."""
        if self.metrics is not None:
            self.metrics.retire()

    def after_fork_in_child(self) -> None:
        """Cheap and lock-free: fresh locks, an empty ring, no shipper yet.

        Runs inside ``fork()`` (also before ``exec`` in ``subprocess`` children),
        so no thread, channel or I/O is started here; the first snapshot or
        ``flush()`` in the child starts its own shipper.
        """
        self.ring.reset_after_fork()
        self.peers.reset_after_fork()
        if self.collapser is not None:
            self.collapser.reset_after_fork()
        if self.metrics is not None:
            self.metrics.reset_after_fork()
        self.listeners = [
            listener for listener in self.listeners if not _is_shipper_listener(listener)
        ]
        self.shipper = None

    def _ensure_shipping_here(self) -> None:
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.start_shipping()

    def publish(self, snapshot: ResetContextSnapshot) -> None:
        if self.pid != os.getpid():
            self._ensure_shipping_here()
        self.ring.append(snapshot)
        for listener in self.listeners:
            try:
                listener(snapshot)
            except Exception:  # named only when one fails: publish is the fault path
                report_internal_error(f"listener {getattr(listener, '__qualname__', listener)}")

    def stats(self) -> dict[str, int]:
        acct = self.ring.accounting()
        out: dict[str, int] = {
            "captured": acct.captured,
            "exported": acct.exported,
            "dropped": acct.dropped,
            "export_failed": acct.export_failed,
            "pending": acct.pending,
            "collapsed": self.collapser.collapsed if self.collapser is not None else 0,
            "collapse_pending": self.collapser.pending if self.collapser is not None else 0,
            "ring_capacity": self.ring.capacity,
            "shipper_alive": int(self.shipper is not None and self.shipper.is_alive()),
            "internal_errors": internal_error_count(),
        }
        for reason, count in sorted(acct.dropped_by_reason.items()):
            out[f"dropped_{reason}"] = count
        return out

    def flush(self, timeout_s: float) -> bool:
        """Hand everything captured so far to the sink; ``False`` at the deadline."""
        self._ensure_shipping_here()
        self.publish_summaries(all_pending=True)
        if self.shipper is None:
            return self.ring.accounting().pending == 0
        return self.shipper.flush(timeout_s)

    def peer_stats(self) -> dict[tuple[str, int], dict[str, Any]]:
        return self.peers.snapshot()


def _is_shipper_listener(listener: Listener) -> bool:
    return getattr(listener, "__func__", None) is Shipper.on_snapshot


RUNTIME: Runtime | None = None
LAST_RUNTIME: Runtime | None = None
"""The runtime of the last ``instrument()``, kept after ``uninstrument()`` so
its ring and counters can still be read."""


def open_history(library: str, host: str | None, port: int | None) -> ConnectionHistory:
    """The history of a new connection to ``(host, port)``, with its peer's
    record, counted among the open connections (``http.client.open_connections``).

    One call per new connection for what the hooks needed three for (the
    peer's record, the history, the count): a Python call costs some 2,000
    instructions, and a fault storm opens a connection per fault.
    """
    runtime = RUNTIME
    if runtime is None:
        return ConnectionHistory(library, host, port, PeerStats())
    history = ConnectionHistory(library, host, port, runtime.peers.get(host, port))
    if runtime.metrics is not None:
        runtime.metrics.on_connection_opened(history)
    return history


def connection_closed(history: ConnectionHistory) -> None:
    """A connection with a history closed, whoever closed it."""
    if history.closed:
        return
    history.closed = True
    runtime = RUNTIME
    if runtime is not None and runtime.metrics is not None:
        runtime.metrics.on_connection_closed(history, time.monotonic() - history.established_at)
