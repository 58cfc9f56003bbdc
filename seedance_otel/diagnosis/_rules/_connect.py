"""Getting a connection: pool exhaustion, refusals, resets on connect, connect timeouts.

These fail before the peer served anything on the connection, so the fix is
about capacity (the client's pool, the peer's backlog) or reachability,
never about keep-alive. TLS failures, also on the way to a connection, are
in ``_tls``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._common import libraries, peer_key, peer_label
from .._finding import Finding, Severity
from ._alpn import alpn_inferred_indices
from ._shared import PeerStatsMap, counted, for_libraries, of_kind, peer_finding, per_peer

__all__ = [
    "connect_refused",
    "connect_timeout",
    "pool_exhaustion",
    "reset_on_connect",
    "reset_on_connect_indices",
]

_NEW_CONNECTION_PHASES = frozenset({"connect", "tls"})


def pool_exhaustion(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Timeouts spent waiting for the client's own pool, not for the peer."""
    findings = []
    for key, snaps in per_peer(snapshots, of_kind(snapshots, FaultKind.POOL_TIMEOUT)):
        libs = libraries(snaps)
        slow = sum(1 for s in snapshots if peer_key(s) == key and s.kind is FaultKind.READ_TIMEOUT)
        summary = (
            f"{counted(len(snaps), 'request')} to {peer_label(key)} timed out waiting for a "
            "free connection in the client's own pool: pool exhaustion, not the network "
            "(nothing was sent to the peer)."
        )
        if "aiohttp" in libs:
            summary += (
                " aiohttp reports it as ConnectionTimeoutError, which reads like a slow connect."
            )
        if slow:
            summary += (
                f" {counted(slow, 'request')} to the same peer hit a read timeout: "
                "slow responses are holding the connections."
            )
        fix = for_libraries(
            libs,
            {
                "httpx": "httpx.AsyncClient(limits=httpx.Limits(max_connections=..., "
                "max_keepalive_connections=...), timeout=httpx.Timeout(..., pool=...)) "
                "(default 100 connections); close streamed responses (async with "
                "client.stream(...), await response.aclose()).",
                "aiohttp": "aiohttp.TCPConnector(limit=..., limit_per_host=...) (default 100 "
                "in all, unlimited per host); release every response (async with "
                "session.get(...) as resp); ClientTimeout(connect=...) includes the pool wait.",
                "*": "Or bound your own concurrency (asyncio.Semaphore) below the pool size.",
            },
        )
        findings.append(
            peer_finding(
                "pool_exhaustion",
                Severity.WARNING,
                key,
                snaps,
                summary=summary,
                fix=fix,
                evidence={"read_timeouts_same_peer": slow},
            )
        )
    return findings


def connect_refused(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """The peer answered the SYN with a RST: nothing listening, or a firewall REJECT."""
    findings = []
    for key, snaps in per_peer(snapshots, of_kind(snapshots, FaultKind.CONNECT_REFUSED)):
        summary = (
            f"{peer_label(key)} refused {counted(len(snaps), 'connection')} (nothing listening "
            f"on port {key[1]}, or a firewall rejecting): the server is down or restarting, or "
            "the address or port is wrong."
        )
        fix = for_libraries(
            libraries(snaps),
            {
                "httpx": "httpx.AsyncHTTPTransport(retries=3) retries failed connects (only "
                "those) to ride out restarts.",
                "aiohttp": "aiohttp never retries a failed connect: retry "
                "aiohttp.ClientConnectorError with backoff.",
                "*": "Check that the service listens on that address and port, and on the "
                "address family the name resolves to (::1 vs 127.0.0.1).",
            },
        )
        findings.append(
            peer_finding("connect_refused", Severity.ERROR, key, snaps, summary=summary, fix=fix)
        )
    return findings


def reset_on_connect_indices(snapshots: Sequence[ResetContextSnapshot]) -> frozenset[int]:
    """Resets of new connections before their first response (ALPN cases left out)."""
    inferred = alpn_inferred_indices(snapshots)
    return frozenset(
        index
        for index, snap in enumerate(snapshots)
        if snap.kind is FaultKind.CONNECTION_RESET
        and index not in inferred
        and snap.connection_reused is not True
        and not snap.connection_requests
        and (snap.phase in _NEW_CONNECTION_PHASES or snap.phase == "request")
    )


def reset_on_connect(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """New connections reset during connect/TLS or before their first response."""
    findings = []
    for key, snaps in per_peer(snapshots, reset_on_connect_indices(snapshots)):
        early = sum(1 for s in snaps if s.phase in _NEW_CONNECTION_PHASES)
        summary = (
            f"{peer_label(key)} reset {counted(len(snaps), 'new connection')} before answering "
            f"({early} during connect/TLS, {len(snaps) - early} after the request was sent): "
            "the peer, or a proxy in front of it, is overloaded, restarting or has no healthy "
            "backend."
        )
        fix = for_libraries(
            libraries(snaps),
            {
                "httpx": "Retry with backoff and jitter (httpx.AsyncHTTPTransport(retries=...) "
                "covers failed connects only); limit the burst with "
                "httpx.Limits(max_connections=...).",
                "aiohttp": "aiohttp retries an idempotent request once by itself; retry the rest "
                "with backoff and limit the burst with TCPConnector(limit_per_host=...).",
                "*": "Check the peer's health, accept backlog and connection limits.",
            },
        )
        findings.append(
            peer_finding(
                "reset_on_connect",
                Severity.WARNING,
                key,
                snaps,
                summary=summary,
                fix=fix,
                evidence={"during_connect_or_tls": early},
            )
        )
    return findings


def connect_timeout(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """TCP connects (or TLS handshakes) that got no answer in time."""
    findings = []
    for key, snaps in per_peer(snapshots, of_kind(snapshots, FaultKind.CONNECT_TIMEOUT)):
        tls = sum(1 for s in snaps if s.phase == "tls")
        summary = (
            f"{counted(len(snaps), 'connect')} to {peer_label(key)} timed out ({tls} in the TLS "
            "handshake): SYNs dropped by a firewall, a full accept queue, or an address that "
            "does not route."
        )
        fix = for_libraries(
            libraries(snaps),
            {
                "httpx": "httpx.Timeout(..., connect=...) bounds it; "
                "httpx.AsyncHTTPTransport(retries=...) retries it.",
                "aiohttp": "aiohttp.ClientTimeout(sock_connect=...) bounds the TCP connect; "
                "connect=... also covers DNS and the pool wait.",
                "*": "Check reachability of the peer's address and its accept backlog.",
            },
        )
        findings.append(
            peer_finding("connect_timeout", Severity.WARNING, key, snaps, summary=summary, fix=fix)
        )
    return findings
