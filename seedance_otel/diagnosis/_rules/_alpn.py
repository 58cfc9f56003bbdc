"""ALPN: client and server agree on no application protocol.

Some refusals are explicit (a TLS alert, HTTP/2 frames to an HTTP/1.1
client); others only show as a reset right after the handshake.
:func:`alpn_inferred_indices` claims those (the rule declares them as what
it explains), so the connect-side and catch-all rules leave them out.
"""

from __future__ import annotations

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._finding import Finding, Severity
from ._helpers import Evidence, PeerKey, Rule, counted, grouped, peer_finding, peer_key, peer_label

__all__ = ["alpn", "alpn_inferred_indices"]

_Offer = tuple[PeerKey, str, bool, tuple[str, ...]]
"""What an ALPN finding is about: the peer, the client library, whether its
offer is known (not when the ``SSLContext`` was made before instrumenting)
and what it offered."""


def _looks_like_h2_frames(snap: ResetContextSnapshot) -> bool:
    text = snap.error_message.lower()
    return (
        "illegal request line" in text
        or "illegal status line" in text
        or ("bad status line" in text and "x00" in text)
    )


def alpn_inferred_indices(evidence: Evidence) -> frozenset[int]:
    """Resets that are most likely an h2-only server dropping an h1 client.

    A server that requires h2 but met a client not offering it (stdlib and
    many proxies answer "no overlap" by negotiating nothing) often completes
    the handshake and then resets. The snapshot then shows a *new* TLS
    connection (``tls_version`` set), nothing negotiated, an offer without
    ``h2`` - or no known offer at all (an ``SSLContext`` created before
    ``instrument()`` is not seen offering), which after a handshake that
    negotiated nothing still points at ALPN first - and a reset before any
    response. A connection of the same library to the same peer that served
    a request, or any successful reuse, rules it out: that peer does talk to
    this client.
    """
    served: set[tuple[PeerKey, str]] = set()
    for snap in evidence.snapshots:
        if (snap.connection_requests or 0) > 0 or snap.alpn_negotiated is not None:
            served.add((peer_key(snap), snap.library))
    out = set()
    for index in evidence.of_kind(FaultKind.CONNECTION_RESET):
        snap = evidence.snapshots[index]
        if (
            snap.connection_reused is not True
            and not snap.connection_requests
            and snap.tls_version is not None
            and snap.alpn_negotiated is None
            and (snap.alpn_offered is None or "h2" not in snap.alpn_offered)
            and snap.phase in ("request", "response")
            and not snap.peer_reuse_ok_count
            and (peer_key(snap), snap.library) not in served
        ):
            out.add(index)
    return frozenset(out)


_GENERIC_FIX = (
    'Offer h2: ctx.set_alpn_protocols(["h2", "http/1.1"]) with an HTTP/2-capable client.'
)


def _alpn_fix(library_name: str, offered: tuple[str, ...] | None) -> str:
    if offered is not None and "h2" in offered:
        return (
            f"The server accepts none of {list(offered)}: check which protocols it is "
            "configured for (a gRPC-only or HTTP/3-only endpoint, or the wrong port)."
        )
    library = Evidence.library(library_name)
    advice = library.advice if library is not None else None
    text: str | None = None
    if advice is not None:
        text = advice.alpn_enable if offered else advice.alpn_user_context
    fix = f"{library.name}: {text}" if library is not None and text else _GENERIC_FIX
    if offered is None:
        fix = (
            "What the client offered is unknown: its ssl.SSLContext was created before "
            "seedance_otel.instrument() (instrument first to see the offer). " + fix
        )
    return fix


def _alpn_cause(label: str, library: str, offered: tuple[str, ...] | None) -> str:
    """Who offered what, and what that says about the server."""
    if offered is None:
        return (
            f"{label} reset a new TLS connection from the {library} client right after a "
            "handshake that negotiated no protocol (what the client offered is unknown); it "
            "most likely requires HTTP/2 (h2)"
        )
    if not offered:
        return (
            f"the {library} client offered no ALPN at all (its ssl.SSLContext never had "
            "set_alpn_protocols called)"
        )
    offer_text = " and ".join(offered)
    if "h2" in offered:
        return f"the {library} client offered {offer_text} and the server took none of them"
    return (
        f"{label} does not accept what the {library} client offered ({offer_text}); it "
        "most likely requires HTTP/2 (h2)"
    )


def _alpn_how(alerts: int, frames: int, other: int, dropped: int) -> str:
    """How the failures showed, one clause per way, ``; ``-joined."""
    how = []
    if alerts:
        how.append(f"{counted(alerts, 'handshake')} failed with TLS alert no_application_protocol")
    if frames:
        how.append(
            f"{counted(frames, 'time')} the server answered with HTTP/2 frames nobody negotiated"
        )
    if other:
        how.append(counted(other, "other ALPN failure"))
    if dropped:
        how.append(
            f"{counted(dropped, 'new connection')} {'were' if dropped != 1 else 'was'} reset "
            "right after a handshake that negotiated no protocol (inferred)"
        )
    return "; ".join(how)


def _find(evidence: Evidence) -> list[Finding]:
    """ALPN refusals (alert, h2 frames to an h1 client) and resets that imply one."""
    inferred = evidence.once(alpn_inferred_indices)

    def offer(index: int, snap: ResetContextSnapshot) -> _Offer | None:
        offered = snap.alpn_offered
        if snap.kind is FaultKind.ALPN_MISMATCH and offered is None:
            offered = ()  # an explicit refusal without a recorded offer: nothing offered
        return (peer_key(snap), snap.library, offered is not None, offered or ())

    indices = [*evidence.of_kind(FaultKind.ALPN_MISMATCH), *inferred]
    findings = []
    for (key, library, known, offer_made), snaps in grouped(evidence, indices, offer):
        offered = offer_made if known else None
        # Inferred ones are all resets, so the rest are the definite refusals.
        definite = [s for s in snaps if s.kind is FaultKind.ALPN_MISMATCH]
        alerts = sum(1 for s in definite if "no application protocol" in s.error_message.lower())
        frames = sum(1 for s in definite if _looks_like_h2_frames(s))
        dropped = len(snaps) - len(definite)
        label = peer_label(key)
        summary = (
            f"ALPN mismatch with {label}: {_alpn_cause(label, library, offered)}; "
            f"{_alpn_how(alerts, frames, len(definite) - alerts - frames, dropped)}."
        )
        findings.append(
            peer_finding(
                "alpn_not_offered" if offered == () else "alpn_mismatch",
                Severity.ERROR if definite else Severity.WARNING,
                key,
                snaps,
                summary=summary,
                fix=_alpn_fix(library, offered),
                evidence={
                    "alpn_offered": list(offered) if offered is not None else "unknown",
                    "alpn_required": "h2" if offered is None or "h2" not in offered else "unknown",
                    "alerts": alerts,
                    "h2_frames": frames,
                    "resets_after_handshake": dropped,
                },
            )
        )
    return findings


alpn = Rule("alpn_mismatch", _find, alpn_inferred_indices)
