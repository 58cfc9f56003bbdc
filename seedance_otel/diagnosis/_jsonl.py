"""Read snapshots back from JSON Lines, keeping what parses and saying what did not.

Each line is one JSON object: either a snapshot as
``ResetContextSnapshot.to_dict()`` writes it, or the same keys nested under
``"snapshot"`` (an envelope with other keys beside it, such as a shipper's
resource attributes). Files written by long-running processes get truncated
mid-line, concatenated and hand-edited, so one bad line must not cost the
diagnosis of the others: bad lines are counted and reported with their line
numbers, and the rest is diagnosed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .._snapshot import FaultKind, ResetContextSnapshot, new_snapshot

__all__ = [
    "PROGRESS_EVERY",
    "JsonlSnapshots",
    "LineProgress",
    "MalformedLine",
    "parse_snapshot_line",
    "read_snapshots",
]

_MAX_REASON = 200


@dataclasses.dataclass(frozen=True)
class MalformedLine:
    """A line that did not hold a snapshot, and why."""

    line: int
    """1-based line number."""
    reason: str


@dataclasses.dataclass(frozen=True)
class JsonlSnapshots:
    """What a JSONL source held: the snapshots, and the lines that were not snapshots."""

    snapshots: tuple[ResetContextSnapshot, ...]
    malformed: tuple[MalformedLine, ...]
    lines: int
    """Non-blank lines read."""


_MAX_INT = 2**64
"""No integer field (a port, a count, nanoseconds, a socket cookie) holds more."""
_SIGNED_FIELDS = frozenset({"errno"})
"""The one numeric field that may be negative (``getaddrinfo`` errors are)."""
_SHARED_TEXT = frozenset(
    {
        "library",
        "phase",
        "error_type",
        "error_message",
        "server_address",
        "peer_address",
        "http_method",
        "dns_question",
        "alpn_negotiated",
        "tls_version",
    }
)
"""Text fields that repeat across snapshots: each distinct value is held once
(``sys.intern``), which keeps a million snapshots in memory affordable."""


_SHARED_INT_LIMIT = 65_536
_SHARED_INTS: dict[int, int] = {}
"""Ports and counts repeat across snapshots: each small value is held once
(at most 65,536 entries), not once per snapshot."""

Check = Callable[[Any], Any]
"""Returns the value a field may hold (interned, for shared text), or raises ValueError."""


def _number_check(name: str, expected: str, nullable: bool, integer: bool, signed: bool) -> Check:
    low = -_MAX_INT if signed else 0

    def check(value: Any) -> Any:
        kind = type(value)
        if kind is int or (kind is float and not integer):
            # Comparisons with NaN are false: NaN fails here too.
            if low <= value < _MAX_INT:
                if kind is int and 0 <= value < _SHARED_INT_LIMIT:
                    return _SHARED_INTS.setdefault(value, value)
                return value
            if kind is float and not math.isfinite(value):
                raise ValueError(f"{name}: not a finite number")
            raise ValueError(f"{name}: {'negative' if value < 0 else 'an integer out of range'}")
        return _other(name, expected, nullable, value)

    return check


def _text_check(name: str, expected: str, nullable: bool, shared: bool) -> Check:
    def check(value: Any) -> Any:
        if type(value) is str:
            return sys.intern(value) if shared else value
        return _other(name, expected, nullable, value)

    return check


def _exact_check(name: str, expected: str, nullable: bool, kind: type) -> Check:
    def check(value: Any) -> Any:
        if type(value) is kind:
            return value
        return _other(name, expected, nullable, value)

    return check


def _offer_check(value: Any) -> Any:
    if value is None:
        return None
    if type(value) is list and all(type(item) is str for item in value):
        return tuple(value)
    raise ValueError("alpn_offered: expected a list of strings")


def _other(name: str, expected: str, nullable: bool, value: Any) -> Any:
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{name}: null where {expected} belongs")
    raise ValueError(f"{name}: {type(value).__name__} where {expected} belongs")


def _check_for(field: dataclasses.Field[Any]) -> Check:
    """The check for one field, read once from its annotation (a string, such as
    ``"float | None"``, under ``from __future__ import annotations``)."""
    alternatives = [part.strip() for part in str(field.type).split("|")]
    expected = " | ".join(alternatives)
    nullable = "None" in alternatives
    (kind,) = [a for a in alternatives if a != "None"]
    name = field.name
    if kind in ("int", "float"):
        return _number_check(name, expected, nullable, kind == "int", name in _SIGNED_FIELDS)
    if kind == "str":
        return _text_check(name, expected, nullable, name in _SHARED_TEXT)
    if kind == "bool":
        return _exact_check(name, expected, nullable, bool)
    if kind.startswith("tuple["):
        return _offer_check
    return _kind_check


def _kind_check(value: Any) -> FaultKind:
    try:
        return FaultKind(value)
    except ValueError:
        raise ValueError(f"kind: {str(value)[:40]!r} is not a fault kind") from None


_CHECKS: dict[str, Check] = {
    field.name: _check_for(field) for field in dataclasses.fields(ResetContextSnapshot)
}


def _snapshot_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The snapshot's fields from a decoded line, each checked; ``ValueError`` if one is wrong.

    ``from_dict`` does not check types, and the rules do arithmetic on these
    fields: a value must fit its annotation, and a number must be one the
    field can hold (finite, within 64 bits, not negative: durations, counts
    and ports never are). Unknown keys are ignored, as ``from_dict`` does.
    """
    checks = _CHECKS
    return {name: checks[name](value) for name, value in data.items() if name in checks}


def _reject_constant(name: str) -> Any:
    """JSON has no NaN or Infinity; Python's parser accepts them unless told not to."""
    raise ValueError(f"{name} is not a number a snapshot can hold")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def parse_snapshot_line(text: str) -> ResetContextSnapshot:
    """One line to a snapshot; ``ValueError`` (with a short reason) if it is not one."""
    try:
        data: Any = _decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if type(data) is dict and type(data.get("snapshot")) is dict:
        data = data["snapshot"]
    if type(data) is not dict:
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "kind" not in data:
        raise ValueError('no "kind": not a snapshot')
    values = _snapshot_fields(data)
    try:
        return new_snapshot(**values)
    except (KeyError, TypeError, ValueError) as exc:
        name = type(exc).__name__
        raise ValueError(f"not a snapshot ({name}: {exc})") from None


LineProgress = Callable[[int], None]
"""Told the number of lines read so far, every :data:`PROGRESS_EVERY` lines."""
PROGRESS_EVERY = 10_000


def read_snapshots(lines: Iterable[str], progress: LineProgress | None = None) -> JsonlSnapshots:
    """Snapshots from an iterable of lines (an open file, ``sys.stdin``, a list).

    Blank lines are skipped silently; every other line either yields a
    snapshot or a :class:`MalformedLine` (also a number no snapshot holds:
    NaN, an infinity, a negative duration, an integer beyond 64 bits).
    """
    snapshots: list[ResetContextSnapshot] = []
    malformed: list[MalformedLine] = []
    count = 0
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        count += 1
        try:
            snapshots.append(parse_snapshot_line(text))
        except ValueError as exc:
            malformed.append(MalformedLine(number, str(exc)[:_MAX_REASON]))
        except RecursionError:
            malformed.append(MalformedLine(number, "nested too deeply"))
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress(number)
    return JsonlSnapshots(tuple(snapshots), tuple(malformed), count)
