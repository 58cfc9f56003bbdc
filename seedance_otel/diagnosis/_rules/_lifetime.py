"""Connection lifetime: a load balancer or proxy that recycles connections by age.

Its resets look like a stale keep-alive (a reused connection, reset), so
:func:`lifetime_clusters` is also what the keep-alive and catch-all rules ask
to leave out the resets this rule explains.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._common import PeerKey, format_seconds, libraries, median, peer_key, peer_label
from .._estimate import is_stale_reuse_candidate
from .._finding import Finding, Severity
from ._shared import PeerStatsMap, for_libraries, peer_finding, pick

__all__ = [
    "AGE_CLUSTER_MIN",
    "AGE_CLUSTER_SHARE",
    "AGE_CLUSTER_TOLERANCE",
    "AgeCluster",
    "lifetime_clusters",
    "max_connection_lifetime",
]

AGE_CLUSTER_TOLERANCE = 0.10
"""Ages within 10 % of each other count as "the same age"."""
AGE_CLUSTER_SHARE = 0.6
"""The cluster must hold this share of the peer's reuse failures."""
AGE_CLUSTER_MIN = 3


@dataclasses.dataclass(frozen=True)
class AgeCluster:
    """Reuse failures of one peer that happened at (nearly) the same connection age."""

    indices: frozenset[int]
    age_low_s: float
    age_high_s: float
    idle_min_s: float
    idle_max_s: float
    total: int


def _reuse_ok_max(
    key: PeerKey, snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> float | None:
    values: list[float] = []
    stats = peer_stats.get(key)
    if stats is not None and stats.get("reuse_ok_count"):
        value = stats.get("reuse_ok_max_idle_s")
        if isinstance(value, (int, float)):
            values.append(float(value))
    values.extend(
        s.peer_reuse_ok_max_idle_s
        for s in snapshots
        if peer_key(s) == key and s.peer_reuse_ok_max_idle_s is not None and s.peer_reuse_ok_count
    )
    return max(values) if values else None


def lifetime_clusters(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> dict[PeerKey, AgeCluster]:
    """Peers whose reuse failures cluster by connection age, not by idle time.

    An idle timeout kills connections that idled long enough, whatever their
    age; a load balancer's maximum connection lifetime kills them at one age,
    whatever their idle time. So: the densest group of failures whose ages lie
    within :data:`AGE_CLUSTER_TOLERANCE` of each other, holding most of the
    peer's failures, whose idle times are *not* what they share - their idle
    spread (relative to their median) is at least 50 % and three times their
    age spread, or most of them idled less than a reuse that worked.
    """
    events: dict[PeerKey, list[tuple[float, float, int]]] = {}
    for index, snap in enumerate(snapshots):
        if snap.connection_age_s is None or snap.connection_idle_s is None:
            continue
        if is_stale_reuse_candidate(snap) or snap.kind is FaultKind.PEER_CLOSED_IDLE:
            events.setdefault(peer_key(snap), []).append(
                (snap.connection_age_s, snap.connection_idle_s, index)
            )
    clusters: dict[PeerKey, AgeCluster] = {}
    for key, items in events.items():
        if len(items) < AGE_CLUSTER_MIN:
            continue
        items.sort()
        best: list[tuple[float, float, int]] = []
        end = 0
        for start in range(len(items)):
            end = max(end, start)
            limit = items[start][0] * (1 + AGE_CLUSTER_TOLERANCE) + 1e-3
            while end + 1 < len(items) and items[end + 1][0] <= limit:
                end += 1
            if end - start + 1 > len(best):
                best = items[start : end + 1]
        if len(best) < max(AGE_CLUSTER_MIN, math.ceil(AGE_CLUSTER_SHARE * len(items))):
            continue
        ages = [a for a, _, _ in best]
        idles = [i for _, i, _ in best]
        age_range = max(ages) - min(ages)
        idle_range = max(idles) - min(idles)
        ok_max = _reuse_ok_max(key, snapshots, peer_stats)
        rel_age = age_range / max(median(ages), 1e-9)
        median_idle = median(idles)
        rel_idle = idle_range / median_idle if median_idle > 0 else math.inf
        varied_idle = rel_idle >= 0.5 and rel_idle > 3 * rel_age
        refuted_by_success = ok_max is not None and (
            sum(1 for i in idles if i < ok_max) * 2 >= len(idles)
        )
        if not (varied_idle or refuted_by_success):
            continue
        clusters[key] = AgeCluster(
            indices=frozenset(i for _, _, i in best),
            age_low_s=min(ages),
            age_high_s=max(ages),
            idle_min_s=min(idles),
            idle_max_s=max(idles),
            total=len(items),
        )
    return clusters


def max_connection_lifetime(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Resets that cluster by connection age: something recycles connections."""
    findings = []
    for key, cluster in sorted(lifetime_clusters(snapshots, peer_stats).items()):
        snaps = pick(snapshots, cluster.indices)
        resets = sum(1 for s in snaps if s.kind is FaultKind.CONNECTION_RESET)
        summary = (
            f"{peer_label(key)} ends connections when they are about "
            f"{format_seconds(cluster.age_low_s)} old, whatever their idle time: "
            f"{len(snaps)} of {cluster.total} reuse failures happened at ages "
            f"{format_seconds(cluster.age_low_s)}-{format_seconds(cluster.age_high_s)} "
            "after idling "
            f"anywhere from {format_seconds(cluster.idle_min_s)} to "
            f"{format_seconds(cluster.idle_max_s)} (a load balancer or proxy with a maximum "
            "connection lifetime)."
        )
        fix = for_libraries(
            libraries(snaps),
            {
                "httpx": "httpx never retries a request that met a reset: retry idempotent "
                "requests once on httpx.RemoteProtocolError / httpx.ReadError / "
                "httpx.WriteError (httpx.HTTPTransport(retries=...) covers only failed "
                "connects); no keep-alive setting avoids an age limit.",
                "aiohttp": "aiohttp already retries idempotent requests once on a reused "
                "connection; retry POST/PATCH yourself (with an idempotency key) on "
                "aiohttp.ServerDisconnectedError / aiohttp.ClientOSError.",
                "*": "Ask the owner of the load balancer to close gracefully at the age limit "
                "(Connection: close on a response, GOAWAY for HTTP/2) or to raise it.",
            },
        )
        findings.append(
            peer_finding(
                "max_connection_lifetime",
                Severity.WARNING if resets else Severity.INFO,
                key,
                snaps,
                summary=summary,
                fix=fix,
                evidence={"resets": resets, "idle_closes": len(snaps) - resets},
                params={
                    "max_connection_lifetime_s": cluster.age_low_s,
                    "age_low_s": cluster.age_low_s,
                    "age_high_s": cluster.age_high_s,
                    "idle_min_s": cluster.idle_min_s,
                    "idle_max_s": cluster.idle_max_s,
                },
            )
        )
    return findings
