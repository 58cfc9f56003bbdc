"""``diagnose()``: run every rule over a set of snapshots and order what they find.

The engine owns only the defaults (the process's own ring and peer records
when nothing is passed) and the order of the result: most severe first, then
best supported. Everything else is in the rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._snapshot import ResetContextSnapshot
from ._common import PeerKey
from ._finding import Finding
from ._rules import RULES

__all__ = ["diagnose", "normalize_peer_stats"]


def normalize_peer_stats(
    peer_stats: Mapping[Any, Mapping[str, Any]] | None,
) -> dict[PeerKey, Mapping[str, Any]]:
    """Keys as ``(host, port)`` with ``""``/``0`` for unknowns, as the registry keys them.

    Accepts ``(host, port)`` tuples (or lists) and ``"host:port"`` strings (what
    a person types, and what JSON can hold); entries that are not
    mappings are skipped rather than failing the whole diagnosis.
    """
    out: dict[PeerKey, Mapping[str, Any]] = {}
    for raw_key, stats in (peer_stats or {}).items():
        if not isinstance(stats, Mapping):
            continue
        host: Any
        port: Any
        if isinstance(raw_key, (tuple, list)) and len(raw_key) == 2:
            host, port = raw_key
        elif isinstance(raw_key, str):
            host, _, port = raw_key.rpartition(":")
            host = host.strip("[]")
        else:
            continue
        try:
            port_number = int(port or 0)
        except (TypeError, ValueError):
            continue
        out[(str(host or ""), port_number)] = stats
    return out


def diagnose(
    snapshots: Iterable[ResetContextSnapshot] | None = None,
    *,
    peer_stats: Mapping[Any, Mapping[str, Any]] | None = None,
) -> list[Finding]:
    """Findings, most severe first, with the fix for each.

    ``snapshots=None`` diagnoses ``seedance_otel.snapshots()`` (the ring's
    current contents); ``peer_stats=None`` uses ``seedance_otel.peer_stats()``,
    this process's record of successful reuses, which sharpens idle-timeout
    estimates. Pass ``peer_stats={}`` when the snapshots come from elsewhere
    (a file, another process) so this process's records do not mix in.
    """
    from .. import _api

    snaps: Sequence[ResetContextSnapshot] = list(
        _api.snapshots() if snapshots is None else snapshots
    )
    peers = normalize_peer_stats(_api.peer_stats() if peer_stats is None else peer_stats)
    findings = [finding for rule in RULES for finding in rule(snaps, peers)]
    findings.sort(key=lambda f: (-f.severity.rank, -f.count, f.code, f.subject))
    return findings
