"""Connection lifetime: a load balancer or proxy that recycles connections by age.

Its resets look like a stale keep-alive (a reused connection, reset), so
:func:`lifetime_clusters` is also what the keep-alive and catch-all rules ask
to leave out the resets this rule explains.
"""

from __future__ import annotations

import bisect
import dataclasses
import math

from ..._snapshot import FaultKind
from .._estimate import idle_events
from .._finding import Finding, Severity
from ._helpers import (
    Evidence,
    PeerKey,
    Rule,
    advice_lines,
    clearly_below,
    format_seconds,
    libraries,
    median,
    peer_finding,
    peer_label,
)
from ._requests import request_count_clusters

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


def _densest(items: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """The longest run of ``(age, idle, index)`` whose ages lie within the tolerance."""
    items.sort()
    ages = [age for age, _, _ in items]
    best_start, best_end = 0, 0
    for start, age in enumerate(ages):
        end = bisect.bisect_right(ages, age * (1 + AGE_CLUSTER_TOLERANCE) + 1e-3, start)
        if end - start > best_end - best_start:
            best_start, best_end = start, end
    return items[best_start:best_end]


def lifetime_clusters(evidence: Evidence) -> dict[PeerKey, AgeCluster]:
    """Peers whose reuse failures cluster by connection age, not by idle time.

    An idle timeout kills connections that idled long enough, whatever their
    age; a load balancer's maximum connection lifetime kills them at one age,
    whatever their idle time. So: the densest group of failures whose ages lie
    within :data:`AGE_CLUSTER_TOLERANCE` of each other, holding most of the
    peer's failures, whose idle times are *not* what they share - their idle
    spread (relative to their median) is at least 50 % and three times their
    age spread, or most of them idled clearly less than a reuse that worked.
    And their age must say more than their idle time: a connection that
    served one request is as old as it was idle, so most of the cluster must
    be clearly older than it was idle. Failures a close-after-N-requests
    peer explains are left out.
    """
    claimed = evidence.once(_request_claims)
    clusters: dict[PeerKey, AgeCluster] = {}
    for key, events in sorted(evidence.once(idle_events).items()):
        items: list[tuple[float, float, int]] = []
        for index in events:
            snap = evidence.snapshots[index]
            if index in claimed or snap.connection_age_s is None:
                continue
            if snap.connection_idle_s is not None:
                items.append((snap.connection_age_s, snap.connection_idle_s, index))
        if len(items) < AGE_CLUSTER_MIN:
            continue
        total = len(items)
        best = _densest(items)
        if len(best) < max(AGE_CLUSTER_MIN, math.ceil(AGE_CLUSTER_SHARE * total)):
            continue
        ages = [a for a, _, _ in best]
        idles = [i for _, i, _ in best]
        older = sum(1 for a, i, _ in best if a - i > AGE_CLUSTER_TOLERANCE * a)
        if older * 2 < len(best):
            continue
        rel_age = (max(ages) - min(ages)) / max(median(ages), 1e-9)
        median_idle = median(idles)
        idle_range = max(idles) - min(idles)
        rel_idle = idle_range / median_idle if median_idle > 0 else math.inf
        varied_idle = rel_idle >= 0.5 and rel_idle > 3 * rel_age
        if not (varied_idle or clearly_below(idles, evidence.reuse_ok_max(key))):
            continue
        clusters[key] = AgeCluster(
            indices=frozenset(i for _, _, i in best),
            age_low_s=min(ages),
            age_high_s=max(ages),
            idle_min_s=min(idles),
            idle_max_s=max(idles),
            total=total,
        )
    return clusters


def _request_claims(evidence: Evidence) -> frozenset[int]:
    return frozenset().union(*(c.indices for c in evidence.once(request_count_clusters).values()))


def _explains(evidence: Evidence) -> frozenset[int]:
    return frozenset().union(*(c.indices for c in evidence.once(lifetime_clusters).values()))


def _find(evidence: Evidence) -> list[Finding]:
    """Resets that cluster by connection age: something recycles connections."""
    findings = []
    for key, cluster in sorted(evidence.once(lifetime_clusters).items()):
        snaps = evidence.pick(cluster.indices)
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
        fix = advice_lines(
            libraries(snaps),
            lambda advice: advice.retry_reset,
            generic="Retry idempotent requests once when a reused connection is reset.",
            then="No keep-alive setting avoids an age limit. Ask the owner of the load balancer "
            "to close gracefully at the age limit (Connection: close on a response, GOAWAY for "
            "HTTP/2) or to raise it.",
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


max_connection_lifetime = Rule("max_connection_lifetime", _find, _explains)
