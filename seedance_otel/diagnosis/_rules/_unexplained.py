"""The catch-all: resets that no other rule explains, so that no fault is dropped.

Which resets the other rules explain is what they declare (``Rule.explains``);
:func:`catch_all` is given that union, so a new rule needs no change here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..._snapshot import FaultKind, ResetContextSnapshot
from .._finding import Finding, Severity
from ._helpers import (
    Evidence,
    Rule,
    advice_lines,
    counted,
    format_seconds,
    libraries,
    peer_finding,
    peer_key,
    peer_label,
    per_peer,
)

__all__ = ["catch_all"]


def _how(snaps: Sequence[ResetContextSnapshot], mid_response: int, reused: int) -> str:
    """``2 mid-response, 1 on reused connections after 3 s idle or less, 1 other``."""
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
    return ", ".join(parts)


def catch_all(explained: Callable[[Evidence], frozenset[int]]) -> Rule:
    """The ``unexplained_resets`` rule, given what every other rule explains."""

    def unexplained_resets(evidence: Evidence) -> list[Finding]:
        """Resets no other rule explains, so that no fault is silently dropped.

        An ``info`` when the same peer's resets are mostly explained otherwise
        (the outliers of an idle-timeout estimate, say); a ``warning`` when they
        are the main story.
        """
        claimed = evidence.once(explained)
        resets = evidence.of_kind(FaultKind.CONNECTION_RESET)
        explained_by_peer: dict[tuple[str, int], int] = {}
        left = []
        for index in resets:
            if index in claimed:
                key = peer_key(evidence.snapshots[index])
                explained_by_peer[key] = explained_by_peer.get(key, 0) + 1
            else:
                left.append(index)
        findings = []
        for key, snaps in per_peer(evidence, left):
            explained_here = explained_by_peer.get(key, 0)
            mid_response = sum(1 for s in snaps if s.phase == "response")
            reused = sum(1 for s in snaps if s.connection_reused and s.phase != "response")
            summary = (
                f"{counted(len(snaps), 'connection reset')} from {peer_label(key)} that neither "
                "an idle timeout, a request or age limit nor the handshake explains "
                f"({_how(snaps, mid_response, reused)}): the peer failed, restarted or shed load "
                "while serving them."
            )
            fix = advice_lines(
                libraries(snaps),
                lambda advice: advice.retry_reset,
                generic="Retry idempotent requests with backoff.",
                then="Look at the peer's logs at these times (the trace ids lead to the "
                "requests).",
            )
            findings.append(
                peer_finding(
                    "unexplained_resets",
                    Severity.INFO if explained_here >= len(snaps) else Severity.WARNING,
                    key,
                    snaps,
                    summary=summary,
                    fix=fix,
                    evidence={
                        "mid_response": mid_response,
                        "on_reused": reused,
                        "explained_otherwise": explained_here,
                    },
                )
            )
        return findings

    return Rule("unexplained_resets", unexplained_resets)
