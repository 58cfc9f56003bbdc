"""Stale keep-alive: reused connections the peer had already dropped for idling.

The peer's idle timeout is estimated per peer (see ``_estimate``), leaving
out the failures a request limit (``_requests``) or a connection age limit
(``_lifetime``) explains; the fix is a client keep-alive below it, in the
words of each library seen (its ``LibraryAdvice``), with the library's
default keep-alive (``Library.default_keepalive_s``) for comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..._snapshot import FaultKind, ResetContextSnapshot
from ...instrumentation.asyncio_clients import generic_idle_fix, stream_client
from .._estimate import (
    COMMON_IDLE_TIMEOUTS_S,
    IdleSamples,
    IdleTimeoutEstimate,
    collect_idle_samples,
    estimate_idle_timeout,
    idle_events,
    idle_histogram,
)
from .._finding import Finding, Severity
from ._helpers import (
    Evidence,
    PeerKey,
    Rule,
    advice_lines,
    counted,
    fault_count,
    format_seconds,
    libraries,
    peer_finding,
    peer_label,
)
from ._lifetime import lifetime_clusters
from ._requests import request_count_clusters

__all__ = ["StaleAnalysis", "stale_analysis", "stale_keepalive"]

# What an idempotent request is, for a library that retries those once by itself.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def _num(value: float) -> str:
    """A number as people write it in code: ``1.6``, ``53``, ``0.8``."""
    return f"{value:g}"


_COMMON_DEFAULTS = "; ".join(f"{who} {_num(s)} s" for s, who in COMMON_IDLE_TIMEOUTS_S)


@dataclasses.dataclass(frozen=True)
class StaleAnalysis:
    """The idle-timeout verdict for one peer, and the snapshots it explains."""

    samples: IdleSamples
    estimate: IdleTimeoutEstimate
    explained: frozenset[int]
    """Indices of the resets and idle closes at or beyond the cliff."""


def stale_analysis(evidence: Evidence) -> dict[PeerKey, StaleAnalysis]:
    """Per peer, the idle-timeout estimate (failures a request or age limit explains left out)."""
    excluded: frozenset[int] = frozenset().union(
        *(c.indices for c in evidence.once(request_count_clusters).values()),
        *(c.indices for c in evidence.once(lifetime_clusters).values()),
    )
    out: dict[PeerKey, StaleAnalysis] = {}
    for key, samples in collect_idle_samples(evidence, excluded).items():
        estimate = estimate_idle_timeout(samples)
        if estimate is None:
            continue
        events = evidence.once(idle_events)[key]
        explained = frozenset(
            index
            for index in events
            if index not in excluded
            and (evidence.snapshots[index].connection_idle_s or 0.0) >= estimate.cliff_s
        )
        out[key] = StaleAnalysis(samples, estimate, explained)
    return out


def _stale_summary(key: PeerKey, est: IdleTimeoutEstimate, resets: int, closes: int) -> str:
    label = peer_label(key)
    low, high = format_seconds(est.low_s), format_seconds(est.high_s)
    if est.basis == "idle_close":
        what = f"{label} closes connections idle for ~{format_seconds(est.estimate_s)}"
        what += f" (seen as {counted(closes, 'close')} of idle pooled connections"
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
            f"{label} drops connections idle for {high} or less: that is only an upper bound "
            "(no reuse after a shorter idle worked or was seen, so the timeout may be much "
            "shorter)"
        )
    if resets:
        tail = (
            f": {counted(resets, 'request')} reused such a connection and "
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
    for name in libs:
        library = Evidence.library(name)
        default = library.default_keepalive_s if library is not None else None
        setting = library.advice.keepalive_setting_name if library is not None else None
        if library is None or default is None or setting is None:
            continue
        if reference <= default <= reference * 1.25 and max_fail_s <= default * 1.02:
            return (
                f" {library.name}'s default {setting} ({_num(default)} s) is just above it, so "
                f"only connections idle between {format_seconds(reference)} and "
                f"{format_seconds(default)} fail: rare, but certain under periodic traffic."
            )
    return ""


def _keepalive_text(k: str, name: str) -> str | None:
    """The library's keep-alive call with ``k`` seconds, and its default."""
    library = Evidence.library(name)
    if library is None or library.advice.keepalive_setting is None:
        return None
    text = f"{library.name}: {library.advice.keepalive_setting(k)}"
    if library.default_keepalive_s is not None:
        text += f" (default {_num(library.default_keepalive_s)} s)"
    return text


def _why(k: str, est: IdleTimeoutEstimate) -> str:
    if est.basis == "idle_close":
        return f"{k} s stays 20 % (at most 5 s) below the measured close."
    if est.low_s is not None:
        return (
            f"{k} s stays below {format_seconds(est.low_s)}, the longest idle that still worked, "
            "by 20 % (at most 5 s): the peer's timer starts a round trip earlier than ours and "
            "may be coarse."
        )
    bound = format_seconds(est.high_s)
    if est.safe_below_s is not None:
        why = (
            f"The timeout is only known to be {bound} or less, so {k} s stays 20 % below "
            f"{format_seconds(est.safe_below_s)}, the shortest common server or load-balancer "
            f"default idle timeout within that bound ({_COMMON_DEFAULTS})."
        )
    else:
        why = (
            f"{k} s is 20 % (at most 5 s) below {bound}, the shortest failure; the timeout is "
            "only bounded above and may be shorter."
        )
    return (
        why + " To sharpen the estimate, let some reuses happen after shorter idle times (each "
        "one that works bounds the timeout from below), or ask the peer's owner for its idle "
        "timeout; check again after the change."
    )


_PLAIN_ASYNCIO = "asyncio"


def _stream_client_fixes(
    snaps: Sequence[ResetContextSnapshot], keepalive_s: float
) -> dict[str, str]:
    """Per client of a plain asyncio connection seen (redis-py, asyncpg, ...): its fix.

    Keyed by the name people know the client by; a client we have no words
    for gets the generic line under its package name.
    """
    seconds = _num(keepalive_s) if keepalive_s > 0 else "0"
    texts: dict[str, str] = {}
    for snap in snaps:
        if snap.library != _PLAIN_ASYNCIO:
            continue
        client = stream_client(snap.client_library)
        if client is not None:
            text = client.idle_fix(seconds)
            texts[client.display_name] = f"{text} {client.retries_reset}".rstrip()
        else:
            texts[snap.client_library or _PLAIN_ASYNCIO] = generic_idle_fix(seconds)
    return texts


def _keepalive_fix(
    libs: Sequence[str],
    keepalive_s: float,
    est: IdleTimeoutEstimate,
    stream_fixes: dict[str, str] | None = None,
) -> str:
    if stream_fixes:
        # Plain asyncio clients: their own setting, beside any HTTP client's.
        libs = [lib for lib in libs if lib != _PLAIN_ASYNCIO]
        http = _keepalive_fix(libs, keepalive_s, est) if libs else ""
        lines = [f"{name}: {text}" for name, text in sorted(stream_fixes.items())]
        return "\n".join([*lines, http] if http else lines)
    if keepalive_s <= 0:
        return advice_lines(
            libs,
            lambda advice: advice.disable_keepalive,
            generic="Do not reuse connections to this peer.",
            then="The timeout is too short to keep connections alive.",
        )
    k = _num(keepalive_s)
    lines = [text for name in libs if (text := _keepalive_text(k, name))]
    if not lines:
        lines = [f"Keep idle connections to this peer for at most {k} s."]
    lines.append(_why(k, est) + " Or raise the peer's idle timeout above your keep-alive.")
    return "\n".join(lines)


def _retried_silently(snaps: Sequence[ResetContextSnapshot]) -> int:
    """Resets of idempotent requests that the library itself retried once."""
    count = 0
    for snap in snaps:
        library = Evidence.library(snap.library)
        retries = library is not None and library.advice.retries_idempotent_on_reuse
        if retries and (snap.http_method or "") in _IDEMPOTENT:
            count += 1
    return count


def _explains(evidence: Evidence) -> frozenset[int]:
    return frozenset().union(*(a.explained for a in evidence.once(stale_analysis).values()))


def _find(evidence: Evidence) -> list[Finding]:
    """Reused connections that the peer had already dropped for idling too long."""
    findings = []
    for key, analysis in sorted(evidence.once(stale_analysis).items()):
        est = analysis.estimate
        snaps = evidence.pick(analysis.explained)
        resets = [s for s in snaps if s.kind is FaultKind.CONNECTION_RESET]
        closes = [s for s in snaps if s.kind is FaultKind.PEER_CLOSED_IDLE]
        libs = libraries(snaps) or libraries(evidence.pick(evidence.of_peer(key)))
        max_fail = max((s.connection_idle_s or 0.0) for s in snaps) if snaps else 0.0
        summary = _stale_summary(key, est, fault_count(resets), fault_count(closes))
        summary += _near_default_note(libs, est, max_fail)
        details: dict[str, Any] = {
            "estimate_basis": est.basis,
            "resets": fault_count(resets),
            "idle_closes": fault_count(closes),
            "reuse_ok_count": analysis.samples.reuse_ok_count,
        }
        retried = _retried_silently(resets)
        if retried:
            details["retried_silently"] = retried
        resent = int(evidence.peer_stats.get(key, {}).get("retried_after_reset_count") or 0)
        if resent and resets:
            # Seen by the hooks: the same span sent the request again on a new
            # connection (an SDK's retry loop); the callers saw a delay.
            details["retried_by_client"] = resent
            summary += (
                f" The client sent {resent} of them again on a new connection (its own "
                "retries), so callers saw a delay, not an error."
            )
        if est.outlier_reset_idle_s:
            details["resets_not_explained_idle_s"] = [
                round(v, 3) for v in est.outlier_reset_idle_s
            ]
        if est.inconsistent_reuse_ok_idle_s:
            details["reuse_ok_above_cliff_idle_s"] = [
                round(v, 3) for v in est.inconsistent_reuse_ok_idle_s
            ]
        details["idle_histogram"] = idle_histogram(analysis.samples, est)
        findings.append(
            peer_finding(
                "stale_keepalive",
                Severity.WARNING if resets else Severity.INFO,
                key,
                snaps,
                summary=summary,
                fix=_keepalive_fix(
                    libs,
                    est.recommended_keepalive_s,
                    est,
                    _stream_client_fixes(snaps, est.recommended_keepalive_s),
                ),
                evidence=details,
                params={
                    "peer_idle_timeout_s": est.estimate_s,
                    "bracket_low_s": est.low_s,
                    "bracket_high_s": est.high_s,
                    "recommended_keepalive_s": est.recommended_keepalive_s,
                    "safe_below_s": est.safe_below_s,
                    "reuse_ok_samples": len(analysis.samples.reuse_ok_idle_s),
                    "failure_samples": len(snaps),
                },
            )
        )
    return findings


stale_keepalive = Rule("stale_keepalive", _find, _explains)
