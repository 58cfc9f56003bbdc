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
from collections.abc import Callable, Iterable
from typing import Any

from .._snapshot import FaultKind, ResetContextSnapshot

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


def _accepts(type_name: str, value: Any) -> bool:
    if value is None or type_name == "None":
        return value is None and type_name == "None"
    if type_name == "str":
        return isinstance(value, str)
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "FaultKind":
        return isinstance(value, FaultKind)
    if type_name.startswith("tuple["):
        return isinstance(value, tuple)
    return True


_MAX_INT = 2**64
"""No integer field (a port, a count, nanoseconds, a socket cookie) holds more."""
_SIGNED_FIELDS = frozenset({"errno"})
"""The one numeric field that may be negative (``getaddrinfo`` errors are)."""

# Per field, once: its name, the type alternatives its annotation allows (the
# annotations are strings, such as ``"float | None"``), and whether a number
# in it may be negative.
_FIELDS: tuple[tuple[str, tuple[str, ...], bool], ...] = tuple(
    (
        field.name,
        tuple(part.strip() for part in str(field.type).split("|")),
        field.name in _SIGNED_FIELDS,
    )
    for field in dataclasses.fields(ResetContextSnapshot)
)


def _bad_number(value: Any, signed: bool) -> str | None:
    """Why a number cannot be a snapshot's (too large, negative, not finite), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        if not -_MAX_INT < value < _MAX_INT:
            return "an integer out of range"
    elif not math.isfinite(value):
        return "not a finite number"
    if value < 0 and not signed:
        return "negative"
    return None


def _check_types(snapshot: ResetContextSnapshot) -> None:
    """``from_dict`` does not check types; the rules do arithmetic on these fields.

    A value must fit one of its annotation's alternatives, and a number must
    be one the field can hold: finite, within 64 bits, and not negative
    (durations, counts and ports never are).
    """
    for name, alternatives, signed in _FIELDS:
        value = getattr(snapshot, name)
        if value is None:
            if "None" not in alternatives:
                raise ValueError(f"{name}: null where a value belongs")
            continue
        if not any(_accepts(alternative, value) for alternative in alternatives):
            expected = " | ".join(alternatives)
            raise ValueError(f"{name}: {type(value).__name__} where {expected} belongs")
        problem = _bad_number(value, signed)
        if problem is not None:
            raise ValueError(f"{name}: {problem}")


def _reject_constant(name: str) -> Any:
    """JSON has no NaN or Infinity; Python's parser accepts them unless told not to."""
    raise ValueError(f"{name} is not a number a snapshot can hold")


def parse_snapshot_line(text: str) -> ResetContextSnapshot:
    """One line to a snapshot; ``ValueError`` (with a short reason) if it is not one."""
    try:
        data: Any = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if isinstance(data, dict) and isinstance(data.get("snapshot"), dict):
        data = data["snapshot"]
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "kind" not in data:
        raise ValueError('no "kind": not a snapshot')
    offered = data.get("alpn_offered")
    if offered is not None and not (
        isinstance(offered, list) and all(isinstance(p, str) for p in offered)
    ):
        raise ValueError("alpn_offered: expected a list of strings")
    try:
        snapshot = ResetContextSnapshot.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        name = type(exc).__name__
        raise ValueError(f"not a snapshot ({name}: {exc})") from None
    _check_types(snapshot)
    return snapshot


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
