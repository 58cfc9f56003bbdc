"""The diagnosis rules: one per cause, from the evidence to findings.

Every rule is a :class:`Rule`: ``find(evidence) -> list[Finding]`` and,
for a rule whose findings account for snapshots another rule could also
claim, ``explains(evidence) -> frozenset[int]`` (snapshot indices). Both
read only the :class:`~seedance_otel.diagnosis._evidence.Evidence` they are
given: no clock, no process state, no I/O. That is what lets the same rules
run in-process, on a JSONL file and in unit tests on hand-built snapshots.

Some causes compete for the same snapshots: a reset of a reused connection
may be an idle timeout, a request limit or a load balancer recycling
connections by age; a reset right after a TLS handshake may be an ALPN
refusal or an overloaded peer. The deciding computations
(:func:`request_count_clusters`, :func:`lifetime_clusters`,
:func:`alpn_inferred_indices`, :func:`stale_analysis`, ...) run once per
diagnosis through ``Evidence.once``, so each rule can ask "is this snapshot
someone else's?" without depending on the order rules run in; the catch-all
leaves out the union of what every other rule declares it explains.

Fixes name the concrete setting in the words of each library seen in the
evidence (``LibraryAdvice`` in the library's own module), and generic
advice for a library with none.

One module per area: ``_keepalive`` (stale keep-alive), ``_requests``
(per-connection request limits), ``_lifetime`` (connection age limits),
``_alpn``, ``_dns``, ``_connect`` (pool exhaustion, refusals, resets on
connect, connect timeouts), ``_tls`` and ``_unexplained`` (the catch-all);
``_helpers`` holds the grouping, common evidence and advice they build on.
"""

from __future__ import annotations

from ._alpn import alpn, alpn_inferred_indices
from ._connect import (
    connect_refused,
    connect_timeout,
    pool_exhaustion,
    reset_on_connect,
    reset_on_connect_indices,
)
from ._dns import dns_timeout, resolver_path
from ._helpers import Evidence, PeerStatsMap, Rule
from ._keepalive import StaleAnalysis, stale_analysis, stale_keepalive
from ._lifetime import AgeCluster, lifetime_clusters, max_connection_lifetime
from ._requests import RequestCluster, max_requests, request_count_clusters
from ._tls import tls_error
from ._unexplained import catch_all

__all__ = [
    "CAUSES",
    "RULES",
    "AgeCluster",
    "Evidence",
    "PeerStatsMap",
    "RequestCluster",
    "Rule",
    "StaleAnalysis",
    "alpn",
    "alpn_inferred_indices",
    "connect_refused",
    "connect_timeout",
    "dns_timeout",
    "explained",
    "lifetime_clusters",
    "max_connection_lifetime",
    "max_requests",
    "pool_exhaustion",
    "request_count_clusters",
    "reset_on_connect",
    "reset_on_connect_indices",
    "resolver_path",
    "stale_analysis",
    "stale_keepalive",
    "tls_error",
    "unexplained_resets",
]

CAUSES: tuple[Rule, ...] = (
    stale_keepalive,
    max_requests,
    max_connection_lifetime,
    alpn,
    dns_timeout,
    pool_exhaustion,
    connect_refused,
    reset_on_connect,
    tls_error,
    connect_timeout,
)
"""Every rule that names a cause, each independent of the others' order."""


def explained(evidence: Evidence) -> frozenset[int]:
    """The snapshots some cause's findings account for (what each rule declares)."""
    return frozenset().union(
        *(evidence.once(rule.explains) for rule in CAUSES if rule.explains is not None)
    )


unexplained_resets = catch_all(explained)

RULES: tuple[Rule, ...] = (*CAUSES, unexplained_resets)
"""Every rule, the catch-all last (its place in the order does not matter either)."""
