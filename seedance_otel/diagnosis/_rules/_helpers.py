"""What every rule shares: the :class:`Rule` type, grouping, common evidence, advice.

Most rules have one shape: take the snapshots of their cause, group them by
peer, and say one finding per group, whose evidence starts with the peer, the
count, the libraries seen and a few trace ids. Those steps live here once, so
each rule module holds only what is specific to its cause.

Fix texts that depend on the client library come from the library's own
description (:class:`~seedance_otel._library.LibraryAdvice`, through the
registry): :func:`advice_lines` prints one line per library seen that has
advice, and the rule's generic advice when none has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..._library import LibraryAdvice
from ..._snapshot import ResetContextSnapshot
from .._common import (
    PeerKey,
    example_trace_ids,
    fault_count,
    format_seconds,
    libraries,
    median,
    peer_key,
    peer_label,
)
from .._evidence import Evidence, PeerStatsMap
from .._finding import Finding, Severity

__all__ = [
    "RACE_TOLERANCE",
    "Evidence",
    "PeerKey",
    "PeerStatsMap",
    "Rule",
    "advice_lines",
    "clearly_below",
    "common_evidence",
    "counted",
    "example_trace_ids",
    "fault_count",
    "format_seconds",
    "grouped",
    "libraries",
    "median",
    "peer_finding",
    "peer_key",
    "peer_label",
    "per_peer",
]

_K = TypeVar("_K")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One cause: how to find it, and which snapshots its findings account for.

    ``explains`` declares the snapshots (by index) this rule's findings
    explain; the catch-all rule leaves out every snapshot some rule
    explains, so a new rule that explains resets needs no other change.
    Both functions receive the same :class:`Evidence`; computations they
    share go through ``evidence.once`` so each runs once per diagnosis.
    """

    name: str
    """The code of the findings it makes (``stale_keepalive``, ...)."""
    find: Callable[[Evidence], list[Finding]]
    explains: Callable[[Evidence], frozenset[int]] | None = None

    def __call__(
        self,
        snapshots: Iterable[ResetContextSnapshot],
        peer_stats: Mapping[Any, Mapping[str, Any]] | None = None,
    ) -> list[Finding]:
        """This rule alone on ``snapshots`` (what a test or a one-off check wants)."""
        return self.find(Evidence(snapshots, peer_stats))


RACE_TOLERANCE = 0.01
"""An idle time counts as shorter than a success only when it is shorter by more
than 1 % (at least 5 ms): the peer's timer and the client's race by a round
trip, and coarse timers fire late."""


def clearly_below(idles: list[float], ok_max: float | None) -> bool:
    """Most of ``idles`` are clearly (beyond :data:`RACE_TOLERANCE`) shorter than a
    reuse that worked: then an idle timeout cannot be what ended those connections.
    """
    if ok_max is None:
        return False
    limit = ok_max - max(RACE_TOLERANCE * ok_max, 0.005)
    return sum(1 for i in idles if i < limit) * 2 >= len(idles)


def counted(count: int, noun: str) -> str:
    """``1 request``, ``3 requests``: a count and its noun, plural unless it is one."""
    return f"{count} {noun}{'s' if count != 1 else ''}"


def grouped(
    evidence: Evidence,
    indices: Iterable[int],
    key_of: Callable[[int, ResetContextSnapshot], _K | None],
) -> list[tuple[_K, list[ResetContextSnapshot]]]:
    """The snapshots at ``indices`` grouped by ``key_of(index, snapshot)``; ``None``
    leaves one out.

    Groups come sorted by key (so findings come out in a stable order) and
    hold their snapshots in input order.
    """
    groups: dict[_K, list[ResetContextSnapshot]] = {}
    for index in sorted(indices):
        snap = evidence.snapshots[index]
        key = key_of(index, snap)
        if key is not None:
            groups.setdefault(key, []).append(snap)
    return sorted(groups.items())


def per_peer(
    evidence: Evidence, indices: Iterable[int]
) -> list[tuple[PeerKey, list[ResetContextSnapshot]]]:
    """The snapshots at ``indices``, grouped by peer (see :func:`grouped`)."""
    return grouped(evidence, indices, lambda _index, snap: peer_key(snap))


def common_evidence(key: PeerKey, snaps: Sequence[ResetContextSnapshot]) -> dict[str, Any]:
    """Peer, count, libraries, the addresses behind the name and example trace ids."""
    evidence: dict[str, Any] = {
        "peers": [peer_label(key)],
        "count": fault_count(snaps),
        "libraries": libraries(snaps),
    }
    addresses = sorted({s.peer_address for s in snaps if s.peer_address})
    if addresses and addresses != [key[0]]:
        evidence["peer_addresses"] = addresses
    traces = example_trace_ids(snaps)
    if traces:
        evidence["trace_ids"] = traces
    return evidence


def peer_finding(
    code: str,
    severity: Severity,
    key: PeerKey,
    snaps: Sequence[ResetContextSnapshot],
    *,
    summary: str,
    fix: str,
    evidence: Mapping[str, Any] | None = None,
    params: Mapping[str, float | int | None] | None = None,
) -> Finding:
    """One finding about one peer: the common evidence first, then the rule's own.

    ``params`` defaults to ``{"count": fault_count(snaps)}``, all that a rule
    which only counts its faults has to report.
    """
    full = common_evidence(key, snaps)
    full.update(evidence or {})
    return Finding(
        code=code,
        severity=severity,
        summary=summary,
        fix=fix,
        evidence=full,
        params={"count": fault_count(snaps)} if params is None else params,
    )


def advice_lines(
    libs: Sequence[str],
    text_of: Callable[[LibraryAdvice], str | None],
    *,
    generic: str | None = None,
    then: str | None = None,
) -> str:
    """The fix, one line per library seen that has advice (``label: text``).

    ``generic`` stands in when no library seen has advice (an unknown
    library, or plain asyncio); ``then`` is advice for everyone, last.
    """
    lines = []
    for name in libs:
        library = Evidence.library(name)
        text = text_of(library.advice) if library is not None else None
        if text:
            lines.append(f"{library.name if library is not None else name}: {text}")
    if not lines and generic:
        lines.append(generic)
    if then:
        lines.append(then)
    return "\n".join(lines)
