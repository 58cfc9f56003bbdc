"""The public functions: instrument, uninstrument, snapshots, stats, peer_stats, flush.

``instrument()`` and ``uninstrument()`` hand over to the instrumentor, which
owns the lifecycle; the readers here answer from the running instrumentation,
or from the last one after ``uninstrument()`` (its ring is still there to read).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import _runtime, instrumentor
from ._snapshot import ResetContextSnapshot
from .diagnosis import Finding
from .diagnosis import diagnose as _diagnose

__all__ = [
    "diagnose",
    "flush",
    "instrument",
    "peer_stats",
    "snapshots",
    "stats",
    "uninstrument",
]


def instrument(**options: Any) -> None:
    """Start capturing connection faults. Idempotent.

    Options (each also settable by its ``SEEDANCE_OTEL_*`` variable; see
    ``seedance_otel._config``): ``ring_size``, ``strict``, ``exporter``,
    ``file``, ``batch_size``, ``export_interval_ms``, ... An unknown option
    raises ``TypeError`` naming it.
    """
    instrumentor.start(options, providers={})


def uninstrument() -> None:
    """Restore every patched object and stop shipping (after a bounded flush)."""
    instrumentor.stop()


def snapshots() -> list[ResetContextSnapshot]:
    """The ring's current contents, oldest first (empty if never instrumented)."""
    runtime = _runtime.RUNTIME or _runtime.LAST_RUNTIME
    return runtime.ring.contents() if runtime is not None else []


def stats() -> dict[str, int]:
    """Counters; ``captured == exported + dropped + export_failed + pending`` always."""
    runtime = _runtime.RUNTIME or _runtime.LAST_RUNTIME
    if runtime is None:
        counters = ("captured", "exported", "dropped", "export_failed", "pending")
        return dict.fromkeys((*counters, "collapsed", "collapse_pending"), 0)
    return runtime.stats()


def peer_stats() -> dict[tuple[str, int], dict[str, Any]]:
    """Per-peer keep-alive evidence: successful-reuse idle times, idle closes."""
    runtime = _runtime.RUNTIME or _runtime.LAST_RUNTIME
    return runtime.peer_stats() if runtime is not None else {}


def diagnose(
    snapshots: Iterable[ResetContextSnapshot] | None = None,
    *,
    peer_stats: Mapping[Any, Mapping[str, Any]] | None = None,
) -> list[Finding]:
    """Findings, most severe first, with the fix for each (see ``seedance_otel.diagnosis``).

    ``snapshots=None`` diagnoses this process's ring (``snapshots()``);
    ``peer_stats=None`` uses this process's record of successful reuses
    (``peer_stats()``), which sharpens idle-timeout estimates. Pass
    ``peer_stats={}`` when the snapshots come from elsewhere (a file, another
    process) so this process's records do not mix in.
    """
    return _diagnose(
        _ring_snapshots() if snapshots is None else snapshots,
        peer_stats=_peer_records() if peer_stats is None else peer_stats,
    )


_ring_snapshots = snapshots
_peer_records = peer_stats


def flush(timeout_s: float = 5.0) -> bool:
    """Hand everything captured so far to the exporter; ``False`` at the deadline."""
    runtime = _runtime.RUNTIME or _runtime.LAST_RUNTIME
    if runtime is None:
        return True
    return runtime.flush(timeout_s)
