"""Small helpers every rule shares: peer keys, labels, example trace ids, number formats.

Peers are keyed exactly as :class:`seedance_otel._connection.PeerRegistry`
keys them, ``(server_address or "", server_port or 0)``, so the snapshots of a
peer and its ``peer_stats()`` entry meet without any translation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .._snapshot import ResetContextSnapshot

__all__ = [
    "EXAMPLE_TRACE_IDS",
    "PeerKey",
    "example_trace_ids",
    "fault_count",
    "format_seconds",
    "libraries",
    "median",
    "nice_floor",
    "peer_key",
    "peer_label",
]

PeerKey = tuple[str, int]


def fault_count(snapshots: Iterable[ResetContextSnapshot]) -> int:
    """How many faults ``snapshots`` stand for: in a fault storm each carries
    ``collapsed_count`` more of its kind that were counted, not recorded."""
    return sum(1 + (s.collapsed_count or 0) for s in snapshots)


EXAMPLE_TRACE_IDS = 3
"""Trace ids quoted per finding: enough to open a few traces, not a dump."""


def peer_key(snapshot: ResetContextSnapshot) -> PeerKey:
    return (snapshot.server_address or "", snapshot.server_port or 0)


def peer_label(key: PeerKey) -> str:
    host, port = key
    if ":" in host:
        host = f"[{host}]"
    host = host or "?"
    return f"{host}:{port}" if port else host


def example_trace_ids(snapshots: Iterable[ResetContextSnapshot]) -> list[str]:
    """Up to :data:`EXAMPLE_TRACE_IDS` distinct trace ids, most recent first."""
    ordered = sorted(snapshots, key=lambda s: s.timestamp_ns, reverse=True)
    out: list[str] = []
    for snap in ordered:
        if snap.trace_id and snap.trace_id not in out:
            out.append(snap.trace_id)
            if len(out) == EXAMPLE_TRACE_IDS:
                break
    return out


def libraries(snapshots: Iterable[ResetContextSnapshot]) -> list[str]:
    """The client libraries seen, sorted (the fix is written for these)."""
    return sorted({s.library for s in snapshots if s.library})


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def nice_floor(value_s: float) -> float:
    """Round a duration down to a value people write in configuration.

    Tenths below 10 s, whole seconds below 100 s, multiples of 5 s above:
    rounding *down* keeps a recommended keep-alive on the safe side.
    """
    if value_s <= 0:
        return 0.0
    if value_s < 10:
        return math.floor(value_s * 10 + 1e-9) / 10
    if value_s < 100:
        return float(math.floor(value_s + 1e-9))
    return float(math.floor(value_s / 5 + 1e-9) * 5)


def format_seconds(value_s: float | None) -> str:
    """``3 ms``, ``0.85 s``, ``4.9 s``, ``75 s``: three significant digits at most."""
    if value_s is None:
        return "?"
    if value_s < 0.1:
        return f"{value_s * 1000:.0f} ms"
    if value_s < 10:
        text = f"{value_s:.2f}".rstrip("0").rstrip(".")
    elif value_s < 100:
        text = f"{value_s:.1f}".rstrip("0").rstrip(".")
    else:
        text = f"{value_s:.0f}"
    return f"{text} s"
