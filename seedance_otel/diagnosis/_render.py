"""Findings as text for a terminal: a table to scan, then each finding in full.

For a stale keep-alive, the numbers alone ask to be taken on trust; a small
histogram of idle times (reuses that worked against reuses that were reset,
by idle bucket) shows the cliff the estimate stands on, and makes a noisy
outlier visibly an outlier. Plain ASCII, so it survives any terminal, log
file or CI output.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from ._common import format_seconds
from ._finding import Finding
from ._jsonl import MalformedLine

__all__ = ["render_findings", "render_histogram", "render_malformed"]

WIDTH = 100
_BAR = 24
_SHOWN_MALFORMED = 10


def _wrap(text: str, indent: str, first: str = "") -> list[str]:
    lines: list[str] = []
    for index, paragraph in enumerate(text.splitlines() or [""]):
        lines.extend(
            textwrap.wrap(
                paragraph,
                width=WIDTH,
                initial_indent=first if index == 0 and first else indent,
                subsequent_indent=indent,
                break_on_hyphens=False,
            )
            or [indent]
        )
    return lines


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _range_label(row: Mapping[str, Any]) -> str:
    low, high = row.get("from_s"), row.get("to_s")
    if high is None:
        return f">= {_number(low)} s"
    return f"{_number(low)}-{_number(high)} s"


def _bar(count: int, scale: int, char: str) -> str:
    if count <= 0:
        return ""
    length = max(1, round(count * _BAR / scale)) if scale > _BAR else count
    return f"{char * length} {count}"


def _cliff_marker(estimate: Any, low: Any, high: Any) -> str:
    if isinstance(estimate, (int, float)):
        text = f"peer idle timeout ~{format_seconds(float(estimate))}"
    elif isinstance(high, (int, float)):
        text = f"peer idle timeout <= {format_seconds(float(high))}"
    else:
        return ""
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        text += f" (between {format_seconds(float(low))} and {format_seconds(float(high))})"
    return f"---- {text} ----"


def _after_cliff(row: Mapping[str, Any], low: Any, high: Any) -> bool:
    """The first row past the cliff: beyond the last success, else holding the first failure."""
    start, end = row.get("from_s"), row.get("to_s")
    if isinstance(low, (int, float)):
        return isinstance(start, (int, float)) and start > low
    if isinstance(high, (int, float)):
        return end is None or (isinstance(end, (int, float)) and end > high)
    return False


def render_histogram(finding: Finding) -> list[str]:
    """The idle-time histogram of a stale keep-alive finding, with the cliff marked."""
    rows = finding.evidence.get("idle_histogram") or []
    if not rows:
        return []

    def count(row: Mapping[str, Any], field: str) -> int:
        value = row.get(field, 0)
        return value if isinstance(value, int) else 0

    scale = max(max(count(r, "ok"), count(r, "failed") + count(r, "closed")) for r in rows)
    scale = max(scale, 1)
    has_closes = any("closed" in r for r in rows)
    estimate = finding.params.get("peer_idle_timeout_s")
    low = finding.params.get("bracket_low_s")
    high = finding.params.get("bracket_high_s")
    label_width = max(len(_range_label(r)) for r in rows)
    column = _BAR + 6
    header = "reset (x)" + (" / peer closed (c)" if has_closes else "")
    lines = [
        f"    idle before reuse at {finding.subject}:",
        f"    {'idle':<{label_width}}  {'reuse worked (#)':<{column}}{header}",
    ]
    measured = finding.evidence.get("estimate_basis") == "idle_close"
    marker = _cliff_marker(estimate, None if measured else low, high)
    for row in rows:
        if marker and _after_cliff(row, None if measured else low, high):
            lines.append(f"    {'':<{label_width}}  {marker}")
            marker = ""
        ok = _bar(count(row, "ok"), scale, "#")
        bad = _bar(count(row, "failed"), scale, "x")
        closed = _bar(count(row, "closed"), scale, "c")
        right = "  ".join(part for part in (bad, closed) if part)
        lines.append(f"    {_range_label(row):<{label_width}}  {ok:<{column}}{right}".rstrip())
    return lines


def render_malformed(malformed: Sequence[MalformedLine]) -> list[str]:
    if not malformed:
        return []
    lines = [f"{len(malformed)} malformed line{'s' if len(malformed) != 1 else ''} skipped:"]
    lines.extend(f"  line {m.line}: {m.reason}" for m in malformed[:_SHOWN_MALFORMED])
    if len(malformed) > _SHOWN_MALFORMED:
        lines.append(f"  ... and {len(malformed) - _SHOWN_MALFORMED} more")
    return lines


def render_findings(
    findings: Sequence[Finding],
    *,
    source: str = "",
    snapshots: int | None = None,
    malformed: Sequence[MalformedLine] = (),
) -> str:
    """The whole report: header, table, each finding in full, skipped lines."""
    lines: list[str] = []
    if snapshots is not None:
        where = f" from {source}" if source else ""
        lines.append(f"{snapshots} snapshot{'s' if snapshots != 1 else ''}{where}.")
    if not findings:
        lines.append("Nothing to fix: no finding.")
    else:
        code_width = max(len("CODE"), *(len(f.code) for f in findings))
        lines.append("")
        lines.append(f"{'SEVERITY':<9}{'CODE':<{code_width + 2}}{'COUNT':>5}  SUBJECT")
        for finding in findings:
            lines.append(
                f"{finding.severity.value:<9}{finding.code:<{code_width + 2}}"
                f"{finding.count:>5}  {finding.subject}"
            )
        for number, finding in enumerate(findings, start=1):
            lines.append("")
            head = f"{number}. {finding.severity.value.upper()} [{finding.code}] "
            lines.extend(_wrap(finding.summary, " " * 3, first=head))
            lines.extend(_wrap(finding.fix, " " * 8, first="   fix: "))
            shown = {k: v for k, v in finding.evidence.items() if k != "idle_histogram"}
            if shown:
                evidence = "; ".join(f"{k}={_evidence_value(v)}" for k, v in shown.items())
                lines.extend(_wrap(evidence, " " * 13, first="   evidence: "))
            lines.extend(render_histogram(finding))
    if malformed:
        lines.append("")
        lines.extend(render_malformed(malformed))
    return "\n".join(lines) + "\n"


def _evidence_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_number(v) for v in value)
    return _number(value)
