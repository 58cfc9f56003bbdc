"""DNS: name resolution that timed out, and which resolver did.

A finding here is about a name, not a peer: the resolver, not the network
path to the server, is what to fix, and the fix depends on which resolver
the client used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._common import example_trace_ids, format_seconds, libraries, median, peer_key, peer_label
from .._finding import Finding, Severity
from ._shared import PeerStatsMap, counted, for_libraries, grouped

__all__ = ["dns_timeout", "resolver_path"]


def resolver_path(snapshot: ResetContextSnapshot) -> str:
    """Which resolver timed out, as far as the error tells.

    ``c-ares`` (aiohttp's AsyncResolver, aiodns), ``getaddrinfo`` (the system
    resolver: aiohttp's ThreadedResolver, httpx), ``client_timeout`` (the
    client's own connect timeout fired while resolving), else ``unknown``.
    """
    explicit = getattr(snapshot, "dns_resolver", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    text = snapshot.error_message.lower()
    error_type = snapshot.error_type.lower()
    if "contacting dns servers" in text or "aiodns" in error_type or "ares" in error_type:
        return "c-ares"
    if "name resolution" in text or "gaierror" in error_type or "getaddrinfo" in text:
        return "getaddrinfo"
    if "timeout" in error_type or "timed out" in text or "timeout" in text:
        return "client_timeout"
    return "unknown"


_RESOLVER_NAMES = {
    "c-ares": "c-ares (aiohttp AsyncResolver / aiodns)",
    "getaddrinfo": "the system resolver (getaddrinfo, /etc/resolv.conf)",
    "client_timeout": "the client's connect timeout, which fired while resolving",
    "unknown": "an unknown resolver",
}


def _dns_fix(path: str, libs: Sequence[str]) -> str:
    if path == "c-ares":
        texts = {
            "aiohttp": "aiohttp.TCPConnector(resolver=aiohttp.AsyncResolver(timeout=1.0, "
            "tries=2), ttl_dns_cache=300): c-ares waits 5 s per try by default (11 s in "
            "all), and a longer DNS cache (default 10 s) means fewer lookups to fail.",
            "*": "Then fix the resolver itself: the nameservers c-ares reads from "
            "/etc/resolv.conf (or AsyncResolver(nameservers=[...])) are not answering.",
        }
    elif path == "getaddrinfo":
        texts = {
            "aiohttp": "aiohttp.TCPConnector(ttl_dns_cache=300) caches answers longer (default "
            "10 s); aiohttp.AsyncResolver(timeout=1.0, tries=2) fails fast instead of "
            "glibc's 5 s per try.",
            "httpx": "httpx does not cache names and resolves on every new connection: run a "
            "local caching resolver (systemd-resolved, nscd, NodeLocal DNSCache); httpx.Client "
            "(sync) is not even bounded by its connect timeout while resolving.",
            "*": "Bound glibc: options timeout:1 attempts:2 in /etc/resolv.conf (or "
            'RES_OPTIONS="timeout:1 attempts:2"); in Kubernetes, a trailing dot on the name '
            "skips the ndots:5 search-domain lookups.",
        }
    elif path == "client_timeout":
        texts = {
            "aiohttp": "aiohttp.ClientTimeout(connect=...) includes DNS (sock_connect does not); "
            "use aiohttp.AsyncResolver(timeout=1.0, tries=2) so resolution fails fast with a "
            "DNS error, and TCPConnector(ttl_dns_cache=300) to resolve less often.",
            "httpx": "httpx.Timeout(connect=...) includes DNS for AsyncClient: a lookup that "
            "hangs eats the connect budget. Run a local caching resolver.",
            "*": "The budget went to name resolution, not to the TCP connect: fix the resolver "
            "before raising timeouts.",
        }
    else:
        texts = {"*": "Check the resolver configuration (/etc/resolv.conf) and its reachability."}
    return for_libraries(libs, texts)


def _name_and_resolver(index: int, snap: ResetContextSnapshot) -> tuple[str, str] | None:
    if snap.kind is not FaultKind.DNS_TIMEOUT:
        return None
    return (snap.dns_question or snap.server_address or "?", resolver_path(snap))


def dns_timeout(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Name resolution that timed out: the resolver, not the network path, is at fault."""
    findings = []
    for (name, path), snaps in grouped(snapshots, _name_and_resolver):
        durations = [s.dns_duration_s for s in snaps if s.dns_duration_s is not None]
        took = ""
        if durations:
            took = f" after {format_seconds(median(durations))}"
            if len(durations) > 1 and max(durations) > median(durations) * 1.05:
                took += f" (median; up to {format_seconds(max(durations))})"
        summary = (
            f"Resolving {name} timed out {counted(len(snaps), 'time')}{took} in "
            f"{_RESOLVER_NAMES.get(path, path)}: it is name resolution that fails, not the TCP "
            "connect, so look at the resolver, not at the network path to the server."
        )
        evidence: dict[str, Any] = {
            "names": [name],
            "resolver": path,
            "count": len(snaps),
            "libraries": libraries(snaps),
            "peers": [peer_label(k) for k in sorted({peer_key(s) for s in snaps})],
        }
        traces = example_trace_ids(snaps)
        if traces:
            evidence["trace_ids"] = traces
        findings.append(
            Finding(
                code="dns_timeout",
                severity=Severity.ERROR,
                summary=summary,
                fix=_dns_fix(path, libraries(snaps)),
                evidence=evidence,
                params={
                    "dns_duration_median_s": median(durations) if durations else None,
                    "dns_duration_max_s": max(durations) if durations else None,
                },
            )
        )
    return findings
