"""DNS: name resolution that timed out, and which resolver did.

A finding here is about a name, not a peer: the resolver, not the network
path to the server, is what to fix, and the fix depends on which resolver
the client used.
"""

from __future__ import annotations

from typing import Any

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._finding import Finding, Severity
from ._helpers import (
    Evidence,
    Rule,
    advice_lines,
    counted,
    example_trace_ids,
    fault_count,
    format_seconds,
    grouped,
    libraries,
    median,
    peer_key,
    peer_label,
)

__all__ = ["dns_timeout", "resolver_path"]


def resolver_path(snapshot: ResetContextSnapshot) -> str:
    """Which resolver timed out, as far as the error tells.

    ``c-ares`` (an asynchronous resolver such as aiodns), ``getaddrinfo``
    (the system resolver), ``client_timeout`` (the client's own timeout - a
    connect or total timeout - fired while resolving, which cancels the lookup
    with it), else ``unknown``.
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
    # The caller's own timeout ended the lookup: a total timeout cancels the
    # task mid-lookup (CancelledError), a connect timeout raises its error.
    if "cancellederror" in error_type:
        return "client_timeout"
    if "timeout" in error_type or "timed out" in text or "timeout" in text:
        return "client_timeout"
    return "unknown"


_RESOLVER_NAMES = {
    "c-ares": "c-ares (an asynchronous resolver such as aiodns)",
    "getaddrinfo": "the system resolver (getaddrinfo, /etc/resolv.conf)",
    "client_timeout": "the client's own timeout (connect or total), which fired while resolving",
    "unknown": "an unknown resolver",
}


def _dns_fix(path: str, libs: list[str]) -> str:
    if path == "c-ares":
        return advice_lines(
            libs,
            lambda advice: advice.dns_resolver_timeout,
            generic="Give the asynchronous resolver a short timeout and few tries, and cache "
            "answers longer.",
            then="Then fix the resolver itself: the nameservers it asks (those passed to it, else "
            "the ones in /etc/resolv.conf) are not answering.",
        )
    if path == "getaddrinfo":
        return advice_lines(
            libs,
            lambda advice: advice.dns_cache,
            then="Bound glibc: options timeout:1 attempts:2 in /etc/resolv.conf (or "
            'RES_OPTIONS="timeout:1 attempts:2"); in Kubernetes, a trailing dot on the name '
            "skips the ndots:5 search-domain lookups.",
        )
    if path == "client_timeout":
        return advice_lines(
            libs,
            lambda advice: advice.dns_timeout,
            generic="The client's timeout includes name resolution: give the resolver its own, "
            "shorter timeout so a lookup fails fast with a DNS error.",
            then="The budget went to name resolution, not to the TCP connect: fix the resolver "
            "the client uses (the nameservers it was given, or the system's) before raising "
            "timeouts.",
        )
    return "Check the resolver the client uses (its nameservers) and their reachability."


def _name_and_resolver(index: int, snap: ResetContextSnapshot) -> tuple[str, str] | None:
    return (snap.dns_question or snap.server_address or "?", resolver_path(snap))


def _find(evidence: Evidence) -> list[Finding]:
    """Name resolution that timed out: the resolver, not the network path, is at fault."""
    findings = []
    indices = evidence.of_kind(FaultKind.DNS_TIMEOUT)
    for (name, path), snaps in grouped(evidence, indices, _name_and_resolver):
        durations = [s.dns_duration_s for s in snaps if s.dns_duration_s is not None]
        took = ""
        if durations:
            took = f" after {format_seconds(median(durations))}"
            if len(durations) > 1 and max(durations) > median(durations) * 1.05:
                took += f" (median; up to {format_seconds(max(durations))})"
        summary = (
            f"Resolving {name} timed out {counted(fault_count(snaps), 'time')}{took} in "
            f"{_RESOLVER_NAMES.get(path, path)}: it is name resolution that fails, not the TCP "
            "connect, so look at the resolver, not at the network path to the server."
        )
        details: dict[str, Any] = {
            "names": [name],
            "resolver": path,
            "count": fault_count(snaps),
            "libraries": libraries(snaps),
            "peers": [peer_label(k) for k in sorted({peer_key(s) for s in snaps})],
        }
        traces = example_trace_ids(snaps)
        if traces:
            details["trace_ids"] = traces
        findings.append(
            Finding(
                code="dns_timeout",
                severity=Severity.ERROR,
                summary=summary,
                fix=_dns_fix(path, libraries(snaps)),
                evidence=details,
                params={
                    "dns_duration_median_s": median(durations) if durations else None,
                    "dns_duration_max_s": max(durations) if durations else None,
                },
            )
        )
    return findings


dns_timeout = Rule("dns_timeout", _find)
