"""The background worker that drains the ring into a sink, in batches.

One daemon thread per process. It takes snapshots by sequence number (a batch
at a time, never a copy of the whole ring), hands them to the sink, and
settles them in the ring's accounting as exported, failed or dropped. A batch
leaves when it is full (the capture path wakes the worker) or when the
interval passes. The worker runs with OTel instrumentation suppressed, so
nothing it does - its exporter's DNS lookups and connections included - is
ever captured as a fault.

While the collector is down the worker may sit in the SDK exporter's retry
backoff; the ring keeps taking snapshots and counts the ones it has to
overwrite. ``shutdown()`` interrupts the backoff (the exporter's own
``shutdown``), so ``uninstrument()`` and interpreter exit are bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from opentelemetry.instrumentation.utils import suppress_instrumentation

from .._guard import Guard, report_internal_error
from .._ring import RingBuffer
from .._snapshot import ResetContextSnapshot
from .sinks import ExportOutcome, PartlyExported, Sink

__all__ = ["AFTER_SHUTDOWN", "EXPORTER_NONE", "Shipper"]


AFTER_SHUTDOWN = "after_shutdown"
EXPORTER_NONE = "exporter_none"
_JOIN_TIMEOUT_S = 0.5
"""After the flush: how long to wait for the worker to notice the stop."""


class Shipper:
    """Drains ``ring`` into ``sink``; see the module docstring."""

    def __init__(
        self,
        ring: RingBuffer[ResetContextSnapshot],
        sink: Sink,
        *,
        batch_size: int,
        interval_s: float,
        before_drain: Callable[[], None] | None = None,
    ) -> None:
        self._ring = ring
        self._before_drain = before_drain
        """Runs on the worker before each drain (the runtime's summaries of
        collapsed faults, so a storm's counts ship even when it stops)."""
        self._sink = sink
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = False
        self._progress = threading.Condition()
        self._settled_seq = 0
        """Every snapshot with a lower sequence number has been settled."""
        self._thread = threading.Thread(
            target=self._run, name="seedance-otel-shipper", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # -- called from the capture path (any thread) ----------------------------

    def on_snapshot(self, snapshot: ResetContextSnapshot) -> None:
        if self._stopped:
            self._ring.drop_unread(AFTER_SHUTDOWN)
            return
        if self._ring.unread() >= self._batch_size:
            self._wake.set()

    # -- worker ---------------------------------------------------------------

    def _run(self) -> None:
        with suppress_instrumentation():
            while not self._stopping.is_set():
                self._wake.wait(self._interval_s)
                self._wake.clear()
                try:
                    if self._before_drain is not None:
                        self._before_drain()
                    self._drain()
                except Exception:
                    report_internal_error("shipper")
                    self._stopping.wait(self._interval_s)  # never spin on a failure

    def _drain(self) -> None:
        while not self._stopping.is_set():
            batch = self._ring.take(self._batch_size)
            if not batch.items:
                self._mark_settled(batch.first_seq)
                return
            step = getattr(self._sink, "max_records_per_request", None) or len(batch.items)
            for start in range(0, len(batch.items), step):
                if start:
                    # Encoding OTLP is pure Python and holds the GIL; between
                    # requests, let the application's threads (its event loop)
                    # run at once instead of after the 5 ms switch interval.
                    time.sleep(0)
                part = batch.items[start : start + step]
                self._settle(self._export(part), len(part))
                self._mark_settled(batch.first_seq + start + len(part))

    def _export(self, items: list[ResetContextSnapshot]) -> str | PartlyExported:
        try:
            return self._sink.export(items)
        except Exception:
            # SDK exporters report failure by return value; one that raises is
            # a bug somewhere: logged (rate-limited), counted as failed.
            report_internal_error(f"{self._sink.name} exporter")
            return ExportOutcome.FAILED

    def _settle(self, outcome: str | PartlyExported, count: int) -> None:
        if isinstance(outcome, PartlyExported):
            self._ring.settle(exported=outcome.exported, failed=outcome.failed)
        elif outcome == ExportOutcome.EXPORTED:
            self._ring.settle(exported=count)
        elif outcome == ExportOutcome.DROPPED:
            self._ring.drop_taken(count, EXPORTER_NONE)
        else:
            self._ring.settle(failed=count)

    def _mark_settled(self, seq: int) -> None:
        with self._progress:
            if seq > self._settled_seq:
                self._settled_seq = seq
            self._progress.notify_all()

    # -- lifecycle --------------------------------------------------------------

    def flush(self, timeout_s: float) -> bool:
        """Ship everything captured so far; ``False`` if the deadline passes first."""
        if self._stopped or not self._thread.is_alive():
            return self._ring.accounting().pending == 0
        target = self._ring.accounting().captured
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._progress:
            while self._settled_seq < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._progress.wait(min(remaining, 0.05))
        return True

    def shutdown(self, timeout_s: float) -> bool:
        """Flush within ``timeout_s``, then stop; returns whether the flush completed."""
        if self._stopped:
            return True
        flushed = self.flush(timeout_s)
        self._stopped = True
        self._stopping.set()
        self._wake.set()
        with Guard("exporter shutdown"):
            self._sink.shutdown()  # interrupts a retry backoff in progress
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_JOIN_TIMEOUT_S)
        self._ring.drop_unread(AFTER_SHUTDOWN)
        return flushed
