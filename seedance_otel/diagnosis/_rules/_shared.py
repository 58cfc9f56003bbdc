"""What every rule shares: the rule's signature, grouping, and the common evidence.

Most rules have one shape: take the snapshots of their cause, group them by
peer, and say one finding per group, whose evidence starts with the peer, the
count, the libraries seen and a few trace ids. Those steps live here once, so
each rule module holds only what is specific to its cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..._library import LibraryAdvice
from ..._snapshot import FaultKind, ResetContextSnapshot
from .._common import PeerKey, example_trace_ids, libraries, peer_key, peer_label
from .._finding import Finding, Severity

__all__ = [
    "PeerStatsMap",
    "Rule",
    "advice_texts",
    "common_evidence",
    "counted",
    "for_libraries",
    "grouped",
    "of_kind",
    "peer_finding",
    "per_peer",
    "pick",
]

PeerStatsMap = Mapping[PeerKey, Mapping[str, Any]]
Rule = Callable[[Sequence[ResetContextSnapshot], PeerStatsMap], list[Finding]]

_K = TypeVar("_K")


def counted(count: int, noun: str) -> str:
    """``1 request``, ``3 requests``: a count and its noun, plural unless it is one."""
    return f"{count} {noun}{'s' if count != 1 else ''}"


def of_kind(snapshots: Sequence[ResetContextSnapshot], kind: FaultKind) -> list[int]:
    """Indices of the snapshots of one kind."""
    return [index for index, snap in enumerate(snapshots) if snap.kind is kind]


def pick(
    snapshots: Sequence[ResetContextSnapshot], indices: Iterable[int]
) -> list[ResetContextSnapshot]:
    """The snapshots at ``indices``, in input order."""
    return [snapshots[index] for index in sorted(indices)]


def grouped(
    snapshots: Sequence[ResetContextSnapshot],
    key_of: Callable[[int, ResetContextSnapshot], _K | None],
) -> list[tuple[_K, list[ResetContextSnapshot]]]:
    """Snapshots grouped by ``key_of(index, snapshot)``; ``None`` leaves one out.

    Groups come sorted by key (so findings come out in a stable order) and
    hold their snapshots in input order.
    """
    groups: dict[_K, list[ResetContextSnapshot]] = {}
    for index, snap in enumerate(snapshots):
        key = key_of(index, snap)
        if key is not None:
            groups.setdefault(key, []).append(snap)
    return sorted(groups.items())


def per_peer(
    snapshots: Sequence[ResetContextSnapshot], indices: Iterable[int]
) -> list[tuple[PeerKey, list[ResetContextSnapshot]]]:
    """The snapshots at ``indices``, grouped by peer (see :func:`grouped`)."""
    chosen = frozenset(indices)
    return grouped(snapshots, lambda index, snap: peer_key(snap) if index in chosen else None)


def common_evidence(key: PeerKey, snaps: Sequence[ResetContextSnapshot]) -> dict[str, Any]:
    """Peer, count, libraries, the addresses behind the name and example trace ids."""
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

    ``params`` defaults to ``{"count": len(snaps)}``, all that a rule which
    only counts its snapshots has to report.
    """
    full = common_evidence(key, snaps)
    full.update(evidence or {})
    return Finding(
        code=code,
        severity=severity,
        summary=summary,
        fix=fix,
        evidence=full,
        params={"count": len(snaps)} if params is None else params,
    )


def for_libraries(libs: Sequence[str], texts: Mapping[str, str]) -> str:
    """One line per library seen (all known libraries when none is), then ``texts["*"]``."""
    chosen = [lib for lib in libs if lib in texts] or [lib for lib in texts if lib != "*"]
    lines = [f"{lib}: {texts[lib]}" for lib in chosen]
    if "*" in texts:
        lines.append(texts["*"])
    return "\n".join(lines)


def advice_texts(
    libs: Sequence[str], pick: Callable[[LibraryAdvice], str | None]
) -> dict[str, str]:
    """The seen libraries' own words for a fix (their ``Library.advice``), by name."""
    from ...instrumentation.registry import library_named

    out: dict[str, str] = {}
    for lib in libs:
        library = library_named(lib)
        text = pick(library.advice) if library is not None else None
        if text:
            out[lib] = text
    return out
