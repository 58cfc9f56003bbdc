"""``diagnose()``: run every rule over a set of snapshots and order what they find.

The engine depends on its inputs only: snapshots and peer records, from
wherever they came (this process's ring through ``seedance_otel.diagnose()``,
a JSONL file, a test). It indexes them once (:class:`Evidence`), runs every
rule on that, and orders the result: most severe first, then best supported.
Everything else is in the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._snapshot import ResetContextSnapshot
from ._evidence import Evidence, normalize_peer_stats
from ._finding import Finding
from ._rules import RULES

__all__ = ["diagnose", "normalize_peer_stats"]

Progress = Callable[[str], None]
"""Told the name of each step as it starts (a terminal shows it on long runs)."""


def diagnose(
    snapshots: Iterable[ResetContextSnapshot],
    *,
    peer_stats: Mapping[Any, Mapping[str, Any]] | None = None,
    progress: Progress | None = None,
) -> list[Finding]:
    """Findings, most severe first, with the fix for each.

    ``peer_stats`` is a record of successful reuses per peer (as
    ``seedance_otel.peer_stats()`` returns it), which sharpens idle-timeout
    estimates; leave it out when the snapshots come from elsewhere (a file,
    another process). Linear in the number of snapshots: each is indexed
    once and every rule works per peer from that index.
    """
    if progress is not None:
        progress("indexing snapshots")
    evidence = Evidence(snapshots, peer_stats)
    findings: list[Finding] = []
    for rule in RULES:
        if progress is not None:
            progress(rule.name)
        findings.extend(rule.find(evidence))
    findings.sort(key=lambda f: (-f.severity.rank, -f.count, f.code, f.subject))
    return findings
