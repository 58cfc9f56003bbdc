"""What the diagnosis hands back: a :class:`Finding` with its :class:`Severity`.

A finding is the unit a user acts on: one cause, said in one sentence, with
the concrete change that removes it and the evidence that supports it. It is
immutable and holds only JSON-ready values (``to_dict`` is the wire form of
``seedance-otel diagnose --json``), so it can be logged, compared in tests and
shipped without any reference to the snapshots it came from.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

__all__ = ["Finding", "Severity"]

_RANK = {"info": 0, "warning": 1, "error": 2}


class Severity(str, enum.Enum):
    """How urgent a finding is, ordered ``info < warning < error``.

    ``str``-valued for the wire form, but compared by rank, not
    alphabetically (``"error" < "info"`` as strings): the CLI's exit code is
    "anything at or above ``WARNING``".
    """

    INFO = "info"
    """Worth knowing; nothing fails because of it yet (an early warning)."""
    WARNING = "warning"
    """Requests fail (or are silently retried) because of it; a fix is known."""
    ERROR = "error"
    """Requests to a peer fail every time, or the peer is unreachable."""

    @property
    def rank(self) -> int:
        return _RANK[self.value]

    def __str__(self) -> str:
        return self.value

    # str's own comparisons are lexicographic; compare severities by rank.
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    def __hash__(self) -> int:
        return hash(self.value)


def _json_ready(value: Any) -> Any:
    """Tuples to lists, enums to values, mappings recursively: what ``json`` accepts."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_format_value(v)}" for k, v in value.items())
    return str(value)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnosed cause: what is wrong, how to fix it, and why we think so.

    ``code`` is a stable identifier for machines (``stale_keepalive``,
    ``alpn_mismatch``, ...); ``summary`` is one sentence for people; ``fix``
    names the concrete setting per library; ``evidence`` holds counts, peers
    and example trace ids; ``params`` the numbers a dashboard or test reads
    (``peer_idle_timeout_s``, ``bracket_low_s``, ...).
    """

    code: str
    severity: Severity
    summary: str
    fix: str
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    params: Mapping[str, float | int | None] = dataclasses.field(default_factory=dict)

    # Mappings are not hashable; a finding is identified by what it says.
    def __hash__(self) -> int:
        return hash((self.code, self.severity, self.summary, self.fix))

    @property
    def count(self) -> int:
        """How many snapshots support this finding (``evidence["count"]``, else 0)."""
        value = self.evidence.get("count", 0)
        return value if isinstance(value, int) else 0

    @property
    def subject(self) -> str:
        """What the finding is about: its peers (``host:port``) or DNS names."""
        names = self.evidence.get("peers") or self.evidence.get("names") or ()
        return ", ".join(str(n) for n in names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the ``--json`` form)."""
        return {
            "code": self.code,
            "severity": self.severity.value,
            "summary": self.summary,
            "fix": self.fix,
            "evidence": _json_ready(self.evidence),
            "params": _json_ready(self.params),
        }

    def __str__(self) -> str:
        lines = [f"{self.severity.value.upper()} [{self.code}] {self.summary}"]
        fix_lines = self.fix.splitlines() or [""]
        lines.append(f"  fix: {fix_lines[0]}")
        lines.extend(f"       {line}" for line in fix_lines[1:])
        shown = {k: v for k, v in self.evidence.items() if k != "idle_histogram"}
        if shown:
            lines.append(
                "  evidence: " + "; ".join(f"{k}={_format_value(v)}" for k, v in shown.items())
            )
        if self.params:
            lines.append(
                "  params: " + ", ".join(f"{k}={_format_value(v)}" for k, v in self.params.items())
            )
        return "\n".join(lines)
