"""The catch-all: resets that no other rule explains, so that no fault is dropped.

It asks every rule's deciding helper which resets are theirs, so it must
change with them: a new rule that explains resets adds its helper here.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._common import format_seconds, libraries, peer_key, peer_label
from .._finding import Finding, Severity
from ._alpn import alpn_inferred_indices
from ._connect import reset_on_connect_indices
from ._keepalive import stale_analysis
from ._lifetime import lifetime_clusters
from ._shared import PeerStatsMap, counted, for_libraries, of_kind, peer_finding, per_peer

__all__ = ["unexplained_resets"]


def _explained_indices(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> set[int]:
    """The snapshots some other rule claims."""
    explained: set[int] = set()
    for analysis in stale_analysis(snapshots, peer_stats).values():
        explained |= analysis.explained
    for cluster in lifetime_clusters(snapshots, peer_stats).values():
        explained |= cluster.indices
    explained |= alpn_inferred_indices(snapshots)
    explained |= reset_on_connect_indices(snapshots)
    return explained


def _how(snaps: Sequence[ResetContextSnapshot], mid_response: int, reused: int) -> str:
    """``2 mid-response, 1 on reused connections after 3 s idle or less, 1 other``."""
    other = len(snaps) - mid_response - reused
    parts = []
    if mid_response:
        parts.append(f"{mid_response} mid-response")
    if reused:
        idles = [
            s.connection_idle_s
            for s in snaps
            if s.connection_reused and s.connection_idle_s is not None
        ]
        idle = f" after {format_seconds(max(idles))} idle or less" if idles else ""
        parts.append(f"{reused} on reused connections{idle}")
    if other:
        parts.append(f"{other} other")
    return ", ".join(parts)


def unexplained_resets(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Resets no other rule explains, so that no fault is silently dropped.

    An ``info`` when the same peer's resets are mostly explained otherwise
    (the outliers of an idle-timeout estimate, say); a ``warning`` when they
    are the main story.
    """
    explained = _explained_indices(snapshots, peer_stats)
    resets = of_kind(snapshots, FaultKind.CONNECTION_RESET)
    findings = []
    for key, snaps in per_peer(snapshots, [i for i in resets if i not in explained]):
        explained_here = sum(1 for i in resets if i in explained and peer_key(snapshots[i]) == key)
        mid_response = sum(1 for s in snaps if s.phase == "response")
        reused = sum(1 for s in snaps if s.connection_reused and s.phase != "response")
        summary = (
            f"{counted(len(snaps), 'connection reset')} from {peer_label(key)} that neither an "
            "idle timeout, a connection age limit nor the handshake explains "
            f"({_how(snaps, mid_response, reused)}): the peer failed, restarted or shed load "
            "while serving them."
        )
        fix = for_libraries(
            libraries(snaps),
            {
                "httpx": "httpx never retries: retry idempotent requests on "
                "httpx.RemoteProtocolError / httpx.ReadError with backoff.",
                "aiohttp": "aiohttp retries idempotent requests on reused connections once; "
                "retry the rest with backoff.",
                "*": "Look at the peer's logs at these times (the trace ids lead to the "
                "requests).",
            },
        )
        findings.append(
            peer_finding(
                "unexplained_resets",
                Severity.INFO if explained_here >= len(snaps) else Severity.WARNING,
                key,
                snaps,
                summary=summary,
                fix=fix,
                evidence={
                    "mid_response": mid_response,
                    "on_reused": reused,
                    "explained_otherwise": explained_here,
                },
            )
        )
    return findings
