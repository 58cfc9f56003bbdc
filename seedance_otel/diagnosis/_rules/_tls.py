"""TLS: certificate and other handshake failures, by peer and by cause.

One peer can fail in more than one way (an expired certificate on one name,
a mismatch on another), and each way has its own fix, so findings are per
peer *and* per category read from the error message.
"""

from __future__ import annotations

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._finding import Finding, Severity
from ._helpers import (
    Evidence,
    PeerKey,
    Rule,
    advice_lines,
    counted,
    grouped,
    libraries,
    peer_finding,
    peer_key,
    peer_label,
)

__all__ = ["tls_error"]


def _tls_category(snapshot: ResetContextSnapshot) -> tuple[str, str, str]:
    """(category, what it means, what to do) from a TLS error's message."""
    text = snapshot.error_message.lower()
    if "hostname mismatch" in text or "ip address mismatch" in text:
        return (
            "name_mismatch",
            "the certificate does not name the host the client asked for",
            "Call the peer by a name its certificate lists, or fix the certificate's "
            "subjectAltName.",
        )
    if "expired" in text:
        return ("expired", "the certificate has expired", "Renew the peer's certificate.")
    if "self-signed" in text or "self signed" in text or "local issuer" in text:
        return (
            "untrusted_issuer",
            "the certificate's issuer is not trusted by the client",
            "Trust the issuing CA: pass ctx = ssl.create_default_context(cafile=...) to the "
            "client, or use the truststore package for the system store; the peer may also be "
            "missing its intermediate certificates.",
        )
    if "certificate" in text or "verify" in text:
        return (
            "verification",
            "certificate verification failed",
            "Check the chain the peer sends and the CAs the client trusts.",
        )
    if "wrong version number" in text or "record layer failure" in text or "http request" in text:
        return (
            "not_tls",
            "the port does not speak TLS (plain HTTP, or a proxy port)",
            "Use http:// for a plain-HTTP port, or the peer's TLS port.",
        )
    if "unsupported protocol" in text or "handshake failure" in text or "no shared cipher" in text:
        return (
            "protocol_version",
            "client and server share no TLS version or cipher",
            "Align TLS versions and ciphers (ctx.minimum_version / ctx.set_ciphers, or upgrade "
            "the peer).",
        )
    return ("other", "a TLS failure", "See the error messages in the evidence.")


def _peer_and_category(index: int, snap: ResetContextSnapshot) -> tuple[PeerKey, str]:
    return (peer_key(snap), _tls_category(snap)[0])


def _find(evidence: Evidence) -> list[Finding]:
    """Certificate and other TLS failures, by peer and cause."""
    findings = []
    indices = evidence.of_kind(FaultKind.TLS_ERROR)
    for (key, category), snaps in grouped(evidence, indices, _peer_and_category):
        _, meaning, fix = _tls_category(snaps[0])
        if category == "untrusted_issuer":
            where = advice_lines(libraries(snaps), lambda advice: advice.custom_ca)
            fix += f"\n{where}" if where else ""
        findings.append(
            peer_finding(
                "tls_error",
                Severity.ERROR,
                key,
                snaps,
                summary=f"TLS to {peer_label(key)} failed {counted(len(snaps), 'time')}: "
                f"{meaning}.",
                fix=fix,
                evidence={
                    "category": category,
                    "messages": sorted({s.error_message for s in snaps})[:3],
                },
            )
        )
    return findings


tls_error = Rule("tls_error", _find)
