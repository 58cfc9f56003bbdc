"""Stale keep-alive: reused connections the peer had already dropped for idling.

The peer's idle timeout is estimated per peer (see ``_estimate``), leaving
out the resets a connection age limit explains (``_lifetime``); the fix is a
client keep-alive below it, per library seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._common import PeerKey, format_seconds, libraries, peer_key, peer_label
from .._estimate import (
    IdleSamples,
    IdleTimeoutEstimate,
    collect_idle_samples,
    estimate_idle_timeout,
    idle_histogram,
    is_stale_reuse_candidate,
)
from .._finding import Finding, Severity
from ._lifetime import lifetime_clusters
from ._shared import PeerStatsMap, advice_texts, counted, for_libraries, peer_finding, pick

__all__ = [
    "AIOHTTP_DEFAULT_KEEPALIVE_S",
    "HTTPX_DEFAULT_KEEPALIVE_S",
    "StaleAnalysis",
    "stale_analysis",
    "stale_keepalive",
]

# Library defaults the fixes compare against.
HTTPX_DEFAULT_KEEPALIVE_S = 5.0
AIOHTTP_DEFAULT_KEEPALIVE_S = 15.0
_DEFAULT_KEEPALIVE_S = {"httpx": HTTPX_DEFAULT_KEEPALIVE_S, "aiohttp": AIOHTTP_DEFAULT_KEEPALIVE_S}

# aiohttp (3.10+) retries these once on a reused connection that failed.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def _num(value: float) -> str:
    """A number as people write it in code: ``1.6``, ``53``, ``0.8``."""
    return f"{value:g}"


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
            f"{label} drops connections idle for {high} or less (no successful reuse bounds "
            "it from below, so the timeout may be shorter)"
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
    for lib in libs:
        default, setting = _default_keepalive(lib)
        if default is None:
            continue
        if reference <= default <= reference * 1.25 and max_fail_s <= default * 1.02:
            return (
                f" {lib}'s default {setting} ({_num(default)} s) is just above it, so only "
                f"connections idle between {format_seconds(reference)} and "
                f"{format_seconds(default)} fail: rare, but certain under periodic traffic."
            )
    return ""


def _default_keepalive(lib: str) -> tuple[float | None, str]:
    """A library's default keep-alive and the setting's name (its ``Library`` says)."""
    default = _DEFAULT_KEEPALIVE_S.get(lib)
    if default is not None:
        return default, "keepalive_expiry" if lib == "httpx" else "keepalive_timeout"
    from ...instrumentation.registry import library_named

    library = library_named(lib)
    if library is None:
        return None, ""
    return library.default_keepalive_s, library.advice.keepalive_setting_name or "keep-alive"


def _keepalive_fix(libs: Sequence[str], keepalive_s: float, est: IdleTimeoutEstimate) -> str:
    if keepalive_s <= 0:
        texts = advice_texts(libs, lambda advice: advice.disable_keepalive)
        texts |= {
            "httpx": "httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) "
            "(or httpx.Client): the timeout is too short to keep connections alive.",
            "aiohttp": "aiohttp.TCPConnector(force_close=True): the timeout is too short to "
            "keep connections alive.",
        }
        return for_libraries(libs, texts)
    k = _num(keepalive_s)
    texts = advice_texts(
        libs, lambda advice: advice.keepalive_setting and advice.keepalive_setting(k)
    )
    texts |= {
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
    return for_libraries(libs, texts)


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
        snaps = pick(snapshots, analysis.explained)
        resets = [s for s in snaps if s.kind is FaultKind.CONNECTION_RESET]
        closes = [s for s in snaps if s.kind is FaultKind.PEER_CLOSED_IDLE]
        libs = libraries(snaps) or libraries(s for s in snapshots if peer_key(s) == key)
        max_fail = max((s.connection_idle_s or 0.0) for s in snaps) if snaps else 0.0
        summary = _stale_summary(key, est, len(resets), len(closes))
        summary += _near_default_note(libs, est, max_fail)
        evidence: dict[str, Any] = {
            "estimate_basis": est.basis,
            "resets": len(resets),
            "idle_closes": len(closes),
            "reuse_ok_count": analysis.samples.reuse_ok_count,
        }
        retried = sum(
            1 for s in resets if s.library == "aiohttp" and (s.http_method or "") in _IDEMPOTENT
        )
        if retried:
            evidence["aiohttp_retried_silently"] = retried
        resent = int(peer_stats.get(key, {}).get("retried_after_reset_count") or 0)
        if resent and resets:
            # Seen by the hooks: the same span sent the request again on a new
            # connection (an SDK's retry loop); the callers saw a delay.
            evidence["retried_by_client"] = resent
            summary += (
                f" The client sent {resent} of them again on a new connection (its own "
                "retries), so callers saw a delay, not an error."
            )
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
            peer_finding(
                "stale_keepalive",
                Severity.WARNING if resets else Severity.INFO,
                key,
                snaps,
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
