"""The diagnosis rules: one pure function per cause, from snapshots to findings.

Every rule has the signature ``rule(snapshots, peer_stats) -> list[Finding]``
and reads nothing else: no clock, no process state, no I/O. That is what lets
the same rules run in-process (``seedance_otel.diagnose()``), on a JSONL file
(``seedance-otel diagnose``) and in unit tests on hand-built snapshots.

Some causes compete for the same snapshots: a reset of a reused connection
may be an idle timeout or a load balancer recycling connections by age; a
reset right after a TLS handshake may be an ALPN refusal or an overloaded
peer. The deciding helpers (:func:`lifetime_clusters`,
:func:`alpn_inferred_indices`, :func:`stale_analysis`, ...) are themselves
pure and shared, so each rule can ask "is this snapshot someone else's?"
without depending on the order rules run in.

Fixes name the concrete setting per library, for the libraries actually seen
in the evidence (httpx 0.27+, aiohttp 3.10+; see LAB-NOTES.md for what each
library does at each fault).

One module per area: ``_keepalive`` (stale keep-alive), ``_lifetime``
(connection age limits), ``_alpn``, ``_dns``, ``_connect`` (pool
exhaustion, refusals, resets on connect, connect timeouts), ``_tls`` and
``_unexplained`` (the catch-all); ``_shared`` holds the grouping and the
common evidence they all build on.
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
from ._keepalive import StaleAnalysis, stale_analysis, stale_keepalive
from ._lifetime import AgeCluster, lifetime_clusters, max_connection_lifetime
from ._shared import PeerStatsMap, Rule
from ._tls import tls_error
from ._unexplained import unexplained_resets

__all__ = [
    "RULES",
    "AgeCluster",
    "PeerStatsMap",
    "Rule",
    "StaleAnalysis",
    "alpn",
    "alpn_inferred_indices",
    "connect_refused",
    "connect_timeout",
    "dns_timeout",
    "lifetime_clusters",
    "max_connection_lifetime",
    "pool_exhaustion",
    "reset_on_connect",
    "reset_on_connect_indices",
    "resolver_path",
    "stale_analysis",
    "stale_keepalive",
    "tls_error",
    "unexplained_resets",
]

RULES: tuple[Rule, ...] = (
    stale_keepalive,
    max_connection_lifetime,
    alpn,
    dns_timeout,
    pool_exhaustion,
    connect_refused,
    reset_on_connect,
    tls_error,
    connect_timeout,
    unexplained_resets,
)
"""Every rule, each independent of the others' order."""
