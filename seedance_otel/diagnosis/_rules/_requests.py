"""A peer that ends connections after N requests without saying so.

Envoy's ``max_requests_per_connection``, gunicorn's ``max_requests`` and
some gateways end a connection once it has served N requests. Done well,
the last response says ``Connection: close`` and the client never reuses the
connection; done silently, the next request on it meets a reset (or the
pool finds it closed). Such failures share their ``connection_requests``
value, whatever their idle time, which is what tells them from an idle
timeout (failures beyond an idle time) and from an age limit (failures at
one connection age). :func:`request_count_clusters` is what the lifetime,
keep-alive and catch-all rules ask to leave these failures out.
"""

from __future__ import annotations

import dataclasses
import math

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._estimate import idle_events
from .._finding import Finding, Severity
from ._helpers import (
    RACE_TOLERANCE,
    Evidence,
    PeerKey,
    Rule,
    advice_lines,
    clearly_below,
    counted,
    format_seconds,
    libraries,
    median,
    peer_finding,
    peer_label,
)

__all__ = ["REQUEST_CLUSTER_MIN", "RequestCluster", "max_requests", "request_count_clusters"]

REQUEST_CLUSTER_MIN = 3
"""Failures at one request count needed before a limit is claimed."""
REQUEST_CLUSTER_SHARE = 0.6
"""The share of the peer's reuse failures that must sit at that one count."""


@dataclasses.dataclass(frozen=True)
class RequestCluster:
    """Reuse failures of one peer on connections that had served the same number of requests."""

    requests: int
    indices: frozenset[int]
    idle_min_s: float
    idle_max_s: float
    total: int


def _one_age_explains(snaps: list[ResetContextSnapshot]) -> bool:
    """One connection age lies in every failure's "last alive .. found dead" window.

    A connection that failed at age ``a`` after idling ``i`` was alive at
    ``a - i`` and dead at ``a``; an age limit ``L`` lies in every such
    window. When the windows share an age, an age limit explains the
    failures as well as the request count does (perfectly regular traffic),
    and the age limit is reported.
    """
    windows = [
        (s.connection_age_s - s.connection_idle_s, s.connection_age_s)
        for s in snaps
        if s.connection_age_s is not None and s.connection_idle_s is not None
    ]
    if len(windows) < REQUEST_CLUSTER_MIN:
        return False
    latest_alive = max(low for low, _ in windows)
    earliest_dead = min(high for _, high in windows)
    return latest_alive <= earliest_dead * (1 + RACE_TOLERANCE) + 0.005


def request_count_clusters(evidence: Evidence) -> dict[PeerKey, RequestCluster]:
    """Peers whose reuse failures sit at one ``connection_requests`` value.

    Claimed only when idle time cannot be the cause (most of the cluster
    idled clearly less than a reuse that worked) and connection age cannot
    either (no one age lies between every failure's last success and its
    failure; under perfectly regular traffic an age limit and a request
    limit look alike, and the age limit is then reported). A limit of one
    request is never claimed: no reuse would ever have worked, so nothing
    refutes an idle timeout.
    """
    clusters: dict[PeerKey, RequestCluster] = {}
    for key, events in sorted(evidence.once(idle_events).items()):
        ok_max = evidence.reuse_ok_max(key)
        if ok_max is None:
            continue
        by_count: dict[int, list[int]] = {}
        total = 0
        for index in events:
            snap = evidence.snapshots[index]
            if snap.connection_requests is None:
                continue
            total += 1
            by_count.setdefault(snap.connection_requests, []).append(index)
        if total < REQUEST_CLUSTER_MIN:
            continue
        requests, chosen = max(by_count.items(), key=lambda item: (len(item[1]), -item[0]))
        if requests < 2 or len(chosen) < max(
            REQUEST_CLUSTER_MIN, math.ceil(REQUEST_CLUSTER_SHARE * total)
        ):
            continue
        snaps = [evidence.snapshots[i] for i in chosen]
        idles = [s.connection_idle_s for s in snaps if s.connection_idle_s is not None]
        if not clearly_below(idles, ok_max):
            continue
        if _one_age_explains(snaps):
            continue
        clusters[key] = RequestCluster(
            requests=requests,
            indices=frozenset(chosen),
            idle_min_s=min(idles),
            idle_max_s=max(idles),
            total=total,
        )
    return clusters


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _explains(evidence: Evidence) -> frozenset[int]:
    return frozenset().union(*(c.indices for c in evidence.once(request_count_clusters).values()))


def _find(evidence: Evidence) -> list[Finding]:
    """Failures on the request after the Nth, whatever the idle time: a request limit."""
    findings = []
    for key, cluster in sorted(evidence.once(request_count_clusters).items()):
        snaps = evidence.pick(cluster.indices)
        resets = sum(1 for s in snaps if s.kind is FaultKind.CONNECTION_RESET)
        n = cluster.requests
        idles = [s.connection_idle_s for s in snaps if s.connection_idle_s is not None]
        summary = (
            f"{peer_label(key)} ends connections after {counted(n, 'request')} without "
            f"announcing it (no Connection: close): {len(snaps)} of {cluster.total} reuse "
            f"failures came after the connection had served exactly {n}, after idling anywhere "
            f"from {format_seconds(cluster.idle_min_s)} to {format_seconds(cluster.idle_max_s)} "
            f"(median {format_seconds(median(idles))}), while reuses after up to "
            f"{format_seconds(evidence.reuse_ok_max(key))} of idle worked (a per-connection "
            "request limit, such as Envoy's max_requests_per_connection or a gateway's)."
        )
        fix = advice_lines(
            libraries(snaps),
            lambda advice: advice.retry_reset,
            generic="Retry idempotent requests once when a reused connection is reset.",
            then=f"Ask the peer's owner to send Connection: close on the {_ordinal(n)} "
            "response (the client then closes the connection itself and nothing fails), or to "
            "raise the limit; no keep-alive setting avoids it.",
        )
        findings.append(
            peer_finding(
                "max_requests_per_connection",
                Severity.WARNING if resets else Severity.INFO,
                key,
                snaps,
                summary=summary,
                fix=fix,
                evidence={"resets": resets, "idle_closes": len(snaps) - resets},
                params={
                    "requests_per_connection": n,
                    "idle_min_s": cluster.idle_min_s,
                    "idle_max_s": cluster.idle_max_s,
                },
            )
        )
    return findings


max_requests = Rule("max_requests_per_connection", _find, _explains)
