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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._snapshot import FaultKind, ResetContextSnapshot
from ._common import (
    PeerKey,
    example_trace_ids,
    format_seconds,
    libraries,
    median,
    peer_key,
    peer_label,
)
from ._estimate import (
    IdleSamples,
    IdleTimeoutEstimate,
    collect_idle_samples,
    estimate_idle_timeout,
    idle_histogram,
    is_stale_reuse_candidate,
)
from ._finding import Finding, Severity

__all__ = [
    "RULES",
    "PeerStatsMap",
    "Rule",
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
    "stale_analysis",
    "stale_keepalive",
    "tls_error",
    "unexplained_resets",
]

PeerStatsMap = Mapping[PeerKey, Mapping[str, Any]]
Rule = Callable[[Sequence[ResetContextSnapshot], PeerStatsMap], list[Finding]]

# Library defaults the fixes compare against.
HTTPX_DEFAULT_KEEPALIVE_S = 5.0
AIOHTTP_DEFAULT_KEEPALIVE_S = 15.0
_DEFAULT_KEEPALIVE_S = {"httpx": HTTPX_DEFAULT_KEEPALIVE_S, "aiohttp": AIOHTTP_DEFAULT_KEEPALIVE_S}

# aiohttp (3.10+) retries these once on a reused connection that failed.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

_NEW_CONNECTION_PHASES = frozenset({"connect", "tls"})


def _num(value: float) -> str:
    """A number as people write it in code: ``1.6``, ``53``, ``0.8``."""
    return f"{value:g}"


def _by_peer(
    snapshots: Sequence[ResetContextSnapshot], indices: Sequence[int] | frozenset[int]
) -> dict[PeerKey, list[int]]:
    grouped: dict[PeerKey, list[int]] = {}
    for index in sorted(indices):
        grouped.setdefault(peer_key(snapshots[index]), []).append(index)
    return grouped


def _pick(
    snapshots: Sequence[ResetContextSnapshot], indices: Sequence[int]
) -> list[ResetContextSnapshot]:
    return [snapshots[i] for i in indices]


def _common_evidence(key: PeerKey, snaps: Sequence[ResetContextSnapshot]) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "peers": [peer_label(key)],
        "count": len(snaps),
        "libraries": libraries(snaps),
    }
    addresses = sorted({s.peer_address for s in snaps if s.peer_address})
    if addresses and addresses != [key[0]]:
        evidence["peer_addresses"] = addresses
    traces = example_trace_ids(snaps)
    if traces:
        evidence["trace_ids"] = traces
    return evidence


def _for_libraries(libs: Sequence[str], texts: Mapping[str, str]) -> str:
    """One line per library seen (all known libraries when none is)."""
    chosen = [lib for lib in libs if lib in texts] or [lib for lib in texts if lib != "*"]
    lines = [f"{lib}: {texts[lib]}" for lib in chosen]
    if "*" in texts:
        lines.append(texts["*"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Connection lifetime (load balancers recycling connections by age)

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


def _reuse_ok_max(
    key: PeerKey, snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> float | None:
    values: list[float] = []
    stats = peer_stats.get(key)
    if stats is not None and stats.get("reuse_ok_count"):
        value = stats.get("reuse_ok_max_idle_s")
        if isinstance(value, (int, float)):
            values.append(float(value))
    values.extend(
        s.peer_reuse_ok_max_idle_s
        for s in snapshots
        if peer_key(s) == key and s.peer_reuse_ok_max_idle_s is not None and s.peer_reuse_ok_count
    )
    return max(values) if values else None


def lifetime_clusters(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> dict[PeerKey, AgeCluster]:
    """Peers whose reuse failures cluster by connection age, not by idle time.

    An idle timeout kills connections that idled long enough, whatever their
    age; a load balancer's maximum connection lifetime kills them at one age,
    whatever their idle time. So: the densest group of failures whose ages lie
    within :data:`AGE_CLUSTER_TOLERANCE` of each other, holding most of the
    peer's failures, whose idle times are *not* what they share - their idle
    spread (relative to their median) is at least 50 % and three times their
    age spread, or most of them idled less than a reuse that worked.
    """
    events: dict[PeerKey, list[tuple[float, float, int]]] = {}
    for index, snap in enumerate(snapshots):
        if snap.connection_age_s is None or snap.connection_idle_s is None:
            continue
        if is_stale_reuse_candidate(snap) or snap.kind is FaultKind.PEER_CLOSED_IDLE:
            events.setdefault(peer_key(snap), []).append(
                (snap.connection_age_s, snap.connection_idle_s, index)
            )
    clusters: dict[PeerKey, AgeCluster] = {}
    for key, items in events.items():
        if len(items) < AGE_CLUSTER_MIN:
            continue
        items.sort()
        best: list[tuple[float, float, int]] = []
        end = 0
        for start in range(len(items)):
            end = max(end, start)
            limit = items[start][0] * (1 + AGE_CLUSTER_TOLERANCE) + 1e-3
            while end + 1 < len(items) and items[end + 1][0] <= limit:
                end += 1
            if end - start + 1 > len(best):
                best = items[start : end + 1]
        if len(best) < max(AGE_CLUSTER_MIN, math.ceil(AGE_CLUSTER_SHARE * len(items))):
            continue
        ages = [a for a, _, _ in best]
        idles = [i for _, i, _ in best]
        age_range = max(ages) - min(ages)
        idle_range = max(idles) - min(idles)
        ok_max = _reuse_ok_max(key, snapshots, peer_stats)
        rel_age = age_range / max(median(ages), 1e-9)
        median_idle = median(idles)
        rel_idle = idle_range / median_idle if median_idle > 0 else math.inf
        varied_idle = rel_idle >= 0.5 and rel_idle > 3 * rel_age
        refuted_by_success = ok_max is not None and (
            sum(1 for i in idles if i < ok_max) * 2 >= len(idles)
        )
        if not (varied_idle or refuted_by_success):
            continue
        clusters[key] = AgeCluster(
            indices=frozenset(i for _, _, i in best),
            age_low_s=min(ages),
            age_high_s=max(ages),
            idle_min_s=min(idles),
            idle_max_s=max(idles),
            total=len(items),
        )
    return clusters


def max_connection_lifetime(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Resets that cluster by connection age: something recycles connections."""
    findings = []
    for key, cluster in sorted(lifetime_clusters(snapshots, peer_stats).items()):
        snaps = _pick(snapshots, sorted(cluster.indices))
        libs = libraries(snaps)
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
        fix = _for_libraries(
            libs,
            {
                "httpx": "httpx never retries a request that met a reset: retry idempotent "
                "requests once on httpx.RemoteProtocolError / httpx.ReadError / "
                "httpx.WriteError (httpx.HTTPTransport(retries=...) covers only failed "
                "connects); no keep-alive setting avoids an age limit.",
                "aiohttp": "aiohttp already retries idempotent requests once on a reused "
                "connection; retry POST/PATCH yourself (with an idempotency key) on "
                "aiohttp.ServerDisconnectedError / aiohttp.ClientOSError.",
                "*": "Ask the owner of the load balancer to close gracefully at the age limit "
                "(Connection: close on a response, GOAWAY for HTTP/2) or to raise it.",
            },
        )
        evidence = _common_evidence(key, snaps)
        evidence["resets"] = resets
        evidence["idle_closes"] = len(snaps) - resets
        findings.append(
            Finding(
                code="max_connection_lifetime",
                severity=Severity.WARNING if resets else Severity.INFO,
                summary=summary,
                fix=fix,
                evidence=evidence,
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


# ---------------------------------------------------------------------------
# Stale keep-alive


@dataclasses.dataclass(frozen=True)
class StaleAnalysis:
    """The idle-timeout verdict for one peer, and the snapshots it explains."""

    samples: IdleSamples
    estimate: IdleTimeoutEstimate
    explained: frozenset[int]
    """Indices of the resets and idle closes at or beyond the cliff."""


def stale_analysis(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> dict[PeerKey, StaleAnalysis]:
    """Per peer, the idle-timeout estimate (resets recycled by age left out)."""
    excluded: frozenset[int] = frozenset().union(
        *(c.indices for c in lifetime_clusters(snapshots, peer_stats).values())
    )
    out: dict[PeerKey, StaleAnalysis] = {}
    for key, samples in collect_idle_samples(snapshots, peer_stats, excluded).items():
        estimate = estimate_idle_timeout(samples)
        if estimate is None:
            continue
        explained = frozenset(
            index
            for index, snap in enumerate(snapshots)
            if index not in excluded
            and peer_key(snap) == key
            and snap.connection_idle_s is not None
            and snap.connection_idle_s >= estimate.cliff_s
            and (is_stale_reuse_candidate(snap) or snap.kind is FaultKind.PEER_CLOSED_IDLE)
        )
        out[key] = StaleAnalysis(samples, estimate, explained)
    return out


def _stale_summary(key: PeerKey, est: IdleTimeoutEstimate, resets: int, closes: int) -> str:
    label = peer_label(key)
    low, high = format_seconds(est.low_s), format_seconds(est.high_s)
    if est.basis == "idle_close":
        what = f"{label} closes connections idle for ~{format_seconds(est.estimate_s)}"
        what += f" (seen as {closes} close{'s' if closes != 1 else ''} of idle pooled connections"
        what += f"; longest idle that still worked: {low})" if est.low_s is not None else ")"
    elif est.basis == "bracket" and est.precise:
        what = (
            f"{label} drops connections idle for more than ~{format_seconds(est.estimate_s)} "
            f"(between {low}, the longest idle that still worked, and {high}, the shortest "
            "that failed)"
        )
    elif est.basis == "bracket":
        what = (
            f"{label} drops connections idle somewhere between {low} (the longest idle that "
            f"still worked) and {high} (the shortest that failed)"
        )
    else:
        what = (
            f"{label} drops connections idle for {high} or less (no successful reuse bounds "
            "it from below, so the timeout may be shorter)"
        )
    if resets:
        tail = (
            f": {resets} request{'s' if resets != 1 else ''} reused such a connection and "
            f"{'were' if resets != 1 else 'was'} reset."
        )
    else:
        tail = (
            ": the pool noticed in time so far, but a request that picks a connection as the "
            "close arrives fails."
        )
    return what + tail


def _near_default_note(libs: Sequence[str], est: IdleTimeoutEstimate, max_fail_s: float) -> str:
    """Say so when a library default keep-alive sits just above the peer's timeout.

    Then only connections idle in the narrow window between the two fail:
    rare, easy to dismiss as flakiness, and certain under periodic traffic.
    """
    reference = est.estimate_s if est.estimate_s is not None else est.high_s
    if reference is None:
        return ""
    for lib in libs:
        default = _DEFAULT_KEEPALIVE_S.get(lib)
        if default is None:
            continue
        if reference <= default <= reference * 1.25 and max_fail_s <= default * 1.02:
            setting = "keepalive_expiry" if lib == "httpx" else "keepalive_timeout"
            return (
                f" {lib}'s default {setting} ({_num(default)} s) is just above it, so only "
                f"connections idle between {format_seconds(reference)} and "
                f"{format_seconds(default)} fail: rare, but certain under periodic traffic."
            )
    return ""


def _keepalive_fix(libs: Sequence[str], keepalive_s: float, est: IdleTimeoutEstimate) -> str:
    if keepalive_s <= 0:
        texts = {
            "httpx": "httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) "
            "(or httpx.Client): the timeout is too short to keep connections alive.",
            "aiohttp": "aiohttp.TCPConnector(force_close=True): the timeout is too short to "
            "keep connections alive.",
        }
        return _for_libraries(libs, texts)
    k = _num(keepalive_s)
    texts = {
        "httpx": f"httpx.AsyncClient(limits=httpx.Limits(keepalive_expiry={k})) (or "
        f"httpx.Client; default {_num(HTTPX_DEFAULT_KEEPALIVE_S)} s)",
        "aiohttp": f"aiohttp.TCPConnector(keepalive_timeout={k}) (default "
        f"{_num(AIOHTTP_DEFAULT_KEEPALIVE_S)} s)",
    }
    if est.basis == "idle_close":
        why = f"{k} s stays 20 % (at most 5 s) below the measured close."
    elif est.low_s is not None:
        why = (
            f"{k} s stays below {format_seconds(est.low_s)}, the longest idle that still worked, "
            "by 20 % (at most 5 s): the peer's timer starts a round trip earlier than ours and "
            "may be coarse."
        )
    else:
        why = (
            f"{k} s is 20 % (at most 5 s) below the shortest failure; the timeout may be "
            "shorter, so check again after the change."
        )
    texts["*"] = why + " Or raise the peer's idle timeout above your keep-alive."
    return _for_libraries(libs, texts)


def stale_keepalive(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Reused connections that the peer had already dropped for idling too long.

    The peer's idle timeout is estimated per peer (see ``_estimate``) and the
    fix is a client keep-alive below it, per library seen.
    """
    findings = []
    for key, analysis in sorted(stale_analysis(snapshots, peer_stats).items()):
        est = analysis.estimate
        snaps = _pick(snapshots, sorted(analysis.explained))
        resets = [s for s in snaps if s.kind is FaultKind.CONNECTION_RESET]
        closes = [s for s in snaps if s.kind is FaultKind.PEER_CLOSED_IDLE]
        libs = libraries(snaps) or libraries(s for s in snapshots if peer_key(s) == key)
        max_fail = max((s.connection_idle_s or 0.0) for s in snaps) if snaps else 0.0
        summary = _stale_summary(key, est, len(resets), len(closes))
        summary += _near_default_note(libs, est, max_fail)
        evidence = _common_evidence(key, snaps)
        evidence.update(
            estimate_basis=est.basis,
            resets=len(resets),
            idle_closes=len(closes),
            reuse_ok_count=analysis.samples.reuse_ok_count,
        )
        retried = sum(
            1 for s in resets if s.library == "aiohttp" and (s.http_method or "") in _IDEMPOTENT
        )
        if retried:
            evidence["aiohttp_retried_silently"] = retried
        if est.outlier_reset_idle_s:
            evidence["resets_not_explained_idle_s"] = [
                round(v, 3) for v in est.outlier_reset_idle_s
            ]
        if est.inconsistent_reuse_ok_idle_s:
            evidence["reuse_ok_above_cliff_idle_s"] = [
                round(v, 3) for v in est.inconsistent_reuse_ok_idle_s
            ]
        evidence["idle_histogram"] = idle_histogram(analysis.samples, est)
        findings.append(
            Finding(
                code="stale_keepalive",
                severity=Severity.WARNING if resets else Severity.INFO,
                summary=summary,
                fix=_keepalive_fix(libs, est.recommended_keepalive_s, est),
                evidence=evidence,
                params={
                    "peer_idle_timeout_s": est.estimate_s,
                    "bracket_low_s": est.low_s,
                    "bracket_high_s": est.high_s,
                    "recommended_keepalive_s": est.recommended_keepalive_s,
                    "reuse_ok_samples": len(analysis.samples.reuse_ok_idle_s),
                    "failure_samples": len(snaps),
                },
            )
        )
    return findings


# ---------------------------------------------------------------------------
# ALPN


def _looks_like_h2_frames(snap: ResetContextSnapshot) -> bool:
    text = snap.error_message.lower()
    return (
        "illegal request line" in text
        or "illegal status line" in text
        or ("bad status line" in text and "x00" in text)
    )


def alpn_inferred_indices(snapshots: Sequence[ResetContextSnapshot]) -> frozenset[int]:
    """Resets that are most likely an h2-only server dropping an h1 client.

    A server that requires h2 but met a client not offering it (stdlib and
    many proxies answer "no overlap" by negotiating nothing) often completes
    the handshake and then resets. The snapshot then shows a *new* TLS
    connection (``tls_version`` set), nothing negotiated, an offer without
    ``h2``, and a reset before any response. A connection of the same library
    to the same peer that served a request, or any successful reuse, rules it
    out: that peer does talk to this client.
    """
    served: set[tuple[PeerKey, str]] = set()
    for snap in snapshots:
        if (snap.connection_requests or 0) > 0 or snap.alpn_negotiated is not None:
            served.add((peer_key(snap), snap.library))
    out = set()
    for index, snap in enumerate(snapshots):
        if (
            snap.kind is FaultKind.CONNECTION_RESET
            and snap.connection_reused is not True
            and not snap.connection_requests
            and snap.tls_version is not None
            and snap.alpn_negotiated is None
            and snap.alpn_offered is not None
            and "h2" not in snap.alpn_offered
            and snap.phase in ("request", "response")
            and not snap.peer_reuse_ok_count
            and (peer_key(snap), snap.library) not in served
        ):
            out.add(index)
    return frozenset(out)


def _alpn_fix(library: str, offered: tuple[str, ...]) -> str:
    if "h2" in offered:
        return (
            f"The server accepts none of {list(offered)}: check which protocols it is "
            "configured for (a gRPC-only or HTTP/3-only endpoint, or the wrong port)."
        )
    if library == "httpx":
        if not offered:
            return (
                'httpx: call ctx.set_alpn_protocols(["h2", "http/1.1"]) on the SSLContext '
                "you pass, and use httpx.AsyncClient(http2=True) (pip install 'httpx[http2]')."
            )
        return (
            "httpx: enable HTTP/2 with httpx.AsyncClient(http2=True) (or httpx.Client; "
            "pip install 'httpx[http2]'): it then offers h2 and http/1.1."
        )
    if library == "aiohttp":
        if not offered:
            return (
                "aiohttp passes a user ssl.SSLContext as it is, with no ALPN: call "
                'ctx.set_alpn_protocols(["http/1.1"]) before TCPConnector(ssl=ctx) so the '
                "server can choose HTTP/1.1. If the server speaks only h2, aiohttp cannot talk "
                "to it (it has no HTTP/2): use httpx.AsyncClient(http2=True) for this peer."
            )
        return (
            "aiohttp speaks only HTTP/1.1 and cannot talk to an h2-only server: use "
            "httpx.AsyncClient(http2=True) for this peer, or have the server accept http/1.1."
        )
    return 'Offer h2: ctx.set_alpn_protocols(["h2", "http/1.1"]) with an HTTP/2-capable client.'


def alpn(snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap) -> list[Finding]:
    """ALPN refusals (alert, h2 frames to an h1 client) and resets that imply one."""
    inferred = alpn_inferred_indices(snapshots)
    groups: dict[tuple[PeerKey, str, tuple[str, ...]], list[int]] = {}
    for index, snap in enumerate(snapshots):
        if snap.kind is FaultKind.ALPN_MISMATCH or index in inferred:
            offered = snap.alpn_offered if snap.alpn_offered is not None else ()
            groups.setdefault((peer_key(snap), snap.library, offered), []).append(index)
    findings = []
    for (key, library, offered), indices in sorted(groups.items()):
        snaps = _pick(snapshots, indices)
        definite = [s for i, s in zip(indices, snaps, strict=True) if i not in inferred]
        alerts = sum(1 for s in definite if "no application protocol" in s.error_message.lower())
        frames = sum(1 for s in definite if _looks_like_h2_frames(s))
        dropped = len(snaps) - len(definite)
        label = peer_label(key)
        offer_text = "nothing" if not offered else " and ".join(offered)
        if not offered:
            cause = (
                f"the {library} client offered no ALPN at all (its ssl.SSLContext never had "
                "set_alpn_protocols called)"
            )
        elif "h2" in offered:
            cause = f"the {library} client offered {offer_text} and the server took none of them"
        else:
            cause = (
                f"{label} does not accept what the {library} client offered ({offer_text}); it "
                "most likely requires HTTP/2 (h2)"
            )
        how = []
        if alerts:
            how.append(
                f"{alerts} handshake{'s' if alerts != 1 else ''} failed with TLS alert "
                "no_application_protocol"
            )
        if frames:
            how.append(
                f"{frames} time{'s' if frames != 1 else ''} the server answered with "
                "HTTP/2 frames nobody negotiated"
            )
        other = len(definite) - alerts - frames
        if other:
            how.append(f"{other} other ALPN failure{'s' if other != 1 else ''}")
        if dropped:
            how.append(
                f"{dropped} new connection{'s were' if dropped != 1 else ' was'} reset right "
                "after a handshake that negotiated no protocol (inferred)"
            )
        summary = f"ALPN mismatch with {label}: {cause}; " + "; ".join(how) + "."
        evidence = _common_evidence(key, snaps)
        evidence.update(
            alpn_offered=list(offered),
            alpn_required="h2" if "h2" not in offered else "unknown",
            alerts=alerts,
            h2_frames=frames,
            resets_after_handshake=dropped,
        )
        findings.append(
            Finding(
                code="alpn_not_offered" if not offered else "alpn_mismatch",
                severity=Severity.ERROR if definite else Severity.WARNING,
                summary=summary,
                fix=_alpn_fix(library, offered),
                evidence=evidence,
                params={"count": len(snaps)},
            )
        )
    return findings


# ---------------------------------------------------------------------------
# DNS


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
    return _for_libraries(libs, texts)


def dns_timeout(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Name resolution that timed out: the resolver, not the network path, is at fault."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, snap in enumerate(snapshots):
        if snap.kind is FaultKind.DNS_TIMEOUT:
            name = snap.dns_question or snap.server_address or "?"
            groups.setdefault((name, resolver_path(snap)), []).append(index)
    findings = []
    for (name, path), indices in sorted(groups.items()):
        snaps = _pick(snapshots, indices)
        durations = [s.dns_duration_s for s in snaps if s.dns_duration_s is not None]
        took = ""
        if durations:
            took = f" after {format_seconds(median(durations))}"
            if len(durations) > 1 and max(durations) > median(durations) * 1.05:
                took += f" (median; up to {format_seconds(max(durations))})"
        times = f"{len(snaps)} time{'s' if len(snaps) != 1 else ''}"
        summary = (
            f"Resolving {name} timed out {times}{took} in {_RESOLVER_NAMES.get(path, path)}: "
            "it is name resolution that fails, not the TCP connect, so look at the resolver, "
            "not at the network path to the server."
        )
        peers = sorted({peer_key(s) for s in snaps})
        evidence: dict[str, Any] = {
            "names": [name],
            "resolver": path,
            "count": len(snaps),
            "libraries": libraries(snaps),
            "peers": [peer_label(k) for k in peers],
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


# ---------------------------------------------------------------------------
# Pool exhaustion, refusals, resets on connect, TLS, connect timeouts


def pool_exhaustion(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Timeouts spent waiting for the client's own pool, not for the peer."""
    groups = _by_peer(
        snapshots, [i for i, s in enumerate(snapshots) if s.kind is FaultKind.POOL_TIMEOUT]
    )
    findings = []
    for key, indices in sorted(groups.items()):
        snaps = _pick(snapshots, indices)
        libs = libraries(snaps)
        slow = sum(1 for s in snapshots if peer_key(s) == key and s.kind is FaultKind.READ_TIMEOUT)
        summary = (
            f"{len(snaps)} request{'s' if len(snaps) != 1 else ''} to {peer_label(key)} timed "
            "out waiting for a free connection in the client's own pool: pool exhaustion, not "
            "the network (nothing was sent to the peer)."
        )
        if "aiohttp" in libs:
            summary += (
                " aiohttp reports it as ConnectionTimeoutError, which reads like a slow connect."
            )
        if slow:
            summary += (
                f" {slow} request{'s' if slow != 1 else ''} to the same peer hit a read timeout: "
                "slow responses are holding the connections."
            )
        fix = _for_libraries(
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
        evidence = _common_evidence(key, snaps)
        evidence["read_timeouts_same_peer"] = slow
        findings.append(
            Finding(
                code="pool_exhaustion",
                severity=Severity.WARNING,
                summary=summary,
                fix=fix,
                evidence=evidence,
                params={"count": len(snaps)},
            )
        )
    return findings


def connect_refused(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """The peer answered the SYN with a RST: nothing listening, or a firewall REJECT."""
    groups = _by_peer(
        snapshots, [i for i, s in enumerate(snapshots) if s.kind is FaultKind.CONNECT_REFUSED]
    )
    findings = []
    for key, indices in sorted(groups.items()):
        snaps = _pick(snapshots, indices)
        summary = (
            f"{peer_label(key)} refused {len(snaps)} connection{'s' if len(snaps) != 1 else ''}"
            f" (nothing listening on port {key[1]}, or a firewall rejecting): the server is "
            "down or restarting, or the address or port is wrong."
        )
        fix = _for_libraries(
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
            Finding(
                code="connect_refused",
                severity=Severity.ERROR,
                summary=summary,
                fix=fix,
                evidence=_common_evidence(key, snaps),
                params={"count": len(snaps)},
            )
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
    groups = _by_peer(snapshots, reset_on_connect_indices(snapshots))
    findings = []
    for key, indices in sorted(groups.items()):
        snaps = _pick(snapshots, indices)
        early = sum(1 for s in snaps if s.phase in _NEW_CONNECTION_PHASES)
        summary = (
            f"{peer_label(key)} reset {len(snaps)} new connection{'s' if len(snaps) != 1 else ''}"
            f" before answering ({early} during connect/TLS, {len(snaps) - early} after the "
            "request was sent): the peer, or a proxy in front of it, is overloaded, restarting "
            "or has no healthy backend."
        )
        fix = _for_libraries(
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
        evidence = _common_evidence(key, snaps)
        evidence["during_connect_or_tls"] = early
        findings.append(
            Finding(
                code="reset_on_connect",
                severity=Severity.WARNING,
                summary=summary,
                fix=fix,
                evidence=evidence,
                params={"count": len(snaps)},
            )
        )
    return findings


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
            "Trust the issuing CA: ssl.create_default_context(cafile=...) (aiohttp ssl=ctx, "
            "httpx verify=ctx), or the truststore package for the system store; the peer may "
            "also be missing its intermediate certificates.",
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


def tls_error(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Certificate and other TLS failures, by peer and cause."""
    groups: dict[tuple[PeerKey, str], list[int]] = {}
    for index, snap in enumerate(snapshots):
        if snap.kind is FaultKind.TLS_ERROR:
            groups.setdefault((peer_key(snap), _tls_category(snap)[0]), []).append(index)
    findings = []
    for (key, category), indices in sorted(groups.items()):
        snaps = _pick(snapshots, indices)
        _, meaning, fix = _tls_category(snaps[0])
        summary = (
            f"TLS to {peer_label(key)} failed {len(snaps)} time{'s' if len(snaps) != 1 else ''}:"
            f" {meaning}."
        )
        evidence = _common_evidence(key, snaps)
        evidence["category"] = category
        evidence["messages"] = sorted({s.error_message for s in snaps})[:3]
        findings.append(
            Finding(
                code="tls_error",
                severity=Severity.ERROR,
                summary=summary,
                fix=fix,
                evidence=evidence,
                params={"count": len(snaps)},
            )
        )
    return findings


def connect_timeout(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """TCP connects (or TLS handshakes) that got no answer in time."""
    groups = _by_peer(
        snapshots, [i for i, s in enumerate(snapshots) if s.kind is FaultKind.CONNECT_TIMEOUT]
    )
    findings = []
    for key, indices in sorted(groups.items()):
        snaps = _pick(snapshots, indices)
        tls = sum(1 for s in snaps if s.phase == "tls")
        summary = (
            f"{len(snaps)} connect{'s' if len(snaps) != 1 else ''} to {peer_label(key)} timed "
            f"out ({tls} in the TLS handshake): SYNs dropped by a firewall, a full accept queue, "
            "or an address that does not route."
        )
        fix = _for_libraries(
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
            Finding(
                code="connect_timeout",
                severity=Severity.WARNING,
                summary=summary,
                fix=fix,
                evidence=_common_evidence(key, snaps),
                params={"count": len(snaps)},
            )
        )
    return findings


# ---------------------------------------------------------------------------
# What nothing explains


def unexplained_resets(
    snapshots: Sequence[ResetContextSnapshot], peer_stats: PeerStatsMap
) -> list[Finding]:
    """Resets no other rule explains, so that no fault is silently dropped.

    An ``info`` when the same peer's resets are mostly explained otherwise
    (the outliers of an idle-timeout estimate, say); a ``warning`` when they
    are the main story.
    """
    explained: set[int] = set()
    for analysis in stale_analysis(snapshots, peer_stats).values():
        explained |= analysis.explained
    for cluster in lifetime_clusters(snapshots, peer_stats).values():
        explained |= cluster.indices
    explained |= alpn_inferred_indices(snapshots)
    explained |= reset_on_connect_indices(snapshots)
    resets = [i for i, s in enumerate(snapshots) if s.kind is FaultKind.CONNECTION_RESET]
    groups = _by_peer(snapshots, [i for i in resets if i not in explained])
    findings = []
    for key, indices in sorted(groups.items()):
        snaps = _pick(snapshots, indices)
        explained_here = sum(1 for i in resets if i in explained and peer_key(snapshots[i]) == key)
        mid_response = sum(1 for s in snaps if s.phase == "response")
        reused = sum(1 for s in snaps if s.connection_reused and s.phase != "response")
        other = len(snaps) - mid_response - reused
        parts = []
        if mid_response:
            parts.append(f"{mid_response} mid-response")
        if reused:
            idles = [
                s.connection_idle_s
                for s in snaps
                if s.connection_reused and s.connection_idle_s is not None
            ]
            idle = f" after {format_seconds(max(idles))} idle or less" if idles else ""
            parts.append(f"{reused} on reused connections{idle}")
        if other:
            parts.append(f"{other} other")
        summary = (
            f"{len(snaps)} connection reset{'s' if len(snaps) != 1 else ''} from "
            f"{peer_label(key)} that neither an idle timeout, a connection age limit nor the "
            f"handshake explains ({', '.join(parts)}): the peer failed, restarted or shed load "
            "while serving them."
        )
        fix = _for_libraries(
            libraries(snaps),
            {
                "httpx": "httpx never retries: retry idempotent requests on "
                "httpx.RemoteProtocolError / httpx.ReadError with backoff.",
                "aiohttp": "aiohttp retries idempotent requests on reused connections once; "
                "retry the rest with backoff.",
                "*": "Look at the peer's logs at these times (the trace ids lead to the "
                "requests).",
            },
        )
        evidence = _common_evidence(key, snaps)
        evidence.update(
            mid_response=mid_response, on_reused=reused, explained_otherwise=explained_here
        )
        findings.append(
            Finding(
                code="unexplained_resets",
                severity=Severity.INFO if explained_here >= len(snaps) else Severity.WARNING,
                summary=summary,
                fix=fix,
                evidence=evidence,
                params={"count": len(snaps)},
            )
        )
    return findings


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
