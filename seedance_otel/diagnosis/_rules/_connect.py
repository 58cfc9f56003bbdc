"""Getting a connection: pool exhaustion, refusals, resets on connect, connect timeouts.

These fail before the peer served anything on the connection, so the fix is
about capacity (the client's pool, the peer's backlog) or reachability,
never about keep-alive. TLS failures, also on the way to a connection, are
in ``_tls``.
"""

from __future__ import annotations

from ..._library import LibraryAdvice
from ..._snapshot import FaultKind
from .._finding import Finding, Severity
from ._alpn import alpn_inferred_indices
from ._helpers import (
    Evidence,
    Rule,
    advice_lines,
    counted,
    fault_count,
    libraries,
    peer_finding,
    peer_label,
    per_peer,
)

__all__ = [
    "connect_refused",
    "connect_timeout",
    "pool_exhaustion",
    "reset_on_connect",
    "reset_on_connect_indices",
]

_NEW_CONNECTION_PHASES = frozenset({"connect", "tls"})


def _pool_exhaustion(evidence: Evidence) -> list[Finding]:
    """Timeouts spent waiting for the client's own pool, not for the peer."""
    findings = []
    for key, snaps in per_peer(evidence, evidence.of_kind(FaultKind.POOL_TIMEOUT)):
        libs = libraries(snaps)
        slow = sum(
            1
            for index in evidence.of_peer(key)
            if evidence.snapshots[index].kind is FaultKind.READ_TIMEOUT
        )
        summary = (
            f"{counted(fault_count(snaps), 'request')} to {peer_label(key)} timed out waiting "
            "for a "
            "free connection in the client's own pool: pool exhaustion, not the network "
            "(nothing was sent to the peer)."
        )
        for name in libs:
            library = Evidence.library(name)
            if library is not None and library.advice.pool_timeout_note:
                summary += f" {library.advice.pool_timeout_note}"
        if slow:
            summary += (
                f" {counted(slow, 'request')} to the same peer hit a read timeout: "
                "slow responses are holding the connections."
            )
        fix = advice_lines(
            libs,
            lambda advice: advice.pool_limits,
            generic="Raise the client's connection pool size and release every response.",
            then="Or bound your own concurrency (asyncio.Semaphore) below the pool size.",
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


def _connect_refused(evidence: Evidence) -> list[Finding]:
    """The peer answered the SYN with a RST: nothing listening, or a firewall REJECT."""
    findings = []
    for key, snaps in per_peer(evidence, evidence.of_kind(FaultKind.CONNECT_REFUSED)):
        summary = (
            f"{peer_label(key)} refused {counted(fault_count(snaps), 'connection')} "
            "(nothing listening "
            f"on port {key[1]}, or a firewall rejecting): the server is down or restarting, or "
            "the address or port is wrong."
        )
        fix = advice_lines(
            libraries(snaps),
            lambda advice: advice.retry_connect,
            generic="Retry failed connects with backoff to ride out restarts.",
            then="Check that the service listens on that address and port, and on the "
            "address family the name resolves to (::1 vs 127.0.0.1).",
        )
        findings.append(
            peer_finding("connect_refused", Severity.ERROR, key, snaps, summary=summary, fix=fix)
        )
    return findings


def reset_on_connect_indices(evidence: Evidence) -> frozenset[int]:
    """Resets of new connections before their first response (ALPN cases left out)."""
    inferred = evidence.once(alpn_inferred_indices)
    out = set()
    for index in evidence.of_kind(FaultKind.CONNECTION_RESET):
        snap = evidence.snapshots[index]
        if (
            index not in inferred
            and snap.connection_reused is not True
            and not snap.connection_requests
            and (snap.phase in _NEW_CONNECTION_PHASES or snap.phase == "request")
        ):
            out.add(index)
    return frozenset(out)


def _reset_on_connect_fix(libs: list[str]) -> str:
    def text(advice: LibraryAdvice) -> str | None:
        return " ".join(part for part in (advice.retry_reset, advice.burst_limit) if part) or None

    return advice_lines(
        libs,
        text,
        generic="Retry with backoff and jitter, and limit how many connections open at once.",
        then="Check the peer's health, accept backlog and connection limits.",
    )


def _reset_on_connect(evidence: Evidence) -> list[Finding]:
    """New connections reset during connect/TLS or before their first response."""
    findings = []
    for key, snaps in per_peer(evidence, evidence.once(reset_on_connect_indices)):
        early = fault_count(s for s in snaps if s.phase in _NEW_CONNECTION_PHASES)
        total = fault_count(snaps)
        summary = (
            f"{peer_label(key)} reset {counted(total, 'new connection')} before answering "
            f"({early} during connect/TLS, {total - early} after the request was sent): "
            "the peer, or a proxy in front of it, is overloaded, restarting or has no healthy "
            "backend."
        )
        findings.append(
            peer_finding(
                "reset_on_connect",
                Severity.WARNING,
                key,
                snaps,
                summary=summary,
                fix=_reset_on_connect_fix(libraries(snaps)),
                evidence={"during_connect_or_tls": early},
            )
        )
    return findings


def _connect_timeout(evidence: Evidence) -> list[Finding]:
    """TCP connects (or TLS handshakes) that got no answer in time."""
    findings = []
    for key, snaps in per_peer(evidence, evidence.of_kind(FaultKind.CONNECT_TIMEOUT)):
        tls = sum(1 for s in snaps if s.phase == "tls")
        summary = (
            f"{counted(fault_count(snaps), 'connect')} to {peer_label(key)} timed out "
            f"({tls} in the TLS "
            "handshake): SYNs dropped by a firewall, a full accept queue, or an address that "
            "does not route."
        )
        fix = advice_lines(
            libraries(snaps),
            lambda advice: advice.connect_timeout,
            generic="Bound the connect with the client's connect timeout and retry it.",
            then="Check reachability of the peer's address and its accept backlog.",
        )
        findings.append(
            peer_finding("connect_timeout", Severity.WARNING, key, snaps, summary=summary, fix=fix)
        )
    return findings


pool_exhaustion = Rule("pool_exhaustion", _pool_exhaustion)
connect_refused = Rule("connect_refused", _connect_refused)
reset_on_connect = Rule("reset_on_connect", _reset_on_connect, reset_on_connect_indices)
connect_timeout = Rule("connect_timeout", _connect_timeout)
