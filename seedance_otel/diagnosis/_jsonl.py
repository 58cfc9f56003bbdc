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
from collections.abc import Iterable
from typing import Any

from .._snapshot import FaultKind, ResetContextSnapshot

__all__ = ["JsonlSnapshots", "MalformedLine", "parse_snapshot_line", "read_snapshots"]

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


def _check_types(snapshot: ResetContextSnapshot) -> None:
    """``from_dict`` does not check types; the rules do arithmetic on these fields.

    The annotations are strings (``from __future__ import annotations``) such
    as ``"float | None"``; a value must fit one of the alternatives.
    """
    for field in dataclasses.fields(snapshot):
        value = getattr(snapshot, field.name)
        alternatives = [part.strip() for part in str(field.type).split("|")]
        if not any(_accepts(alternative, value) for alternative in alternatives):
            raise ValueError(f"{field.name}: {type(value).__name__} where {field.type} belongs")


def parse_snapshot_line(text: str) -> ResetContextSnapshot:
    """One line to a snapshot; ``ValueError`` (with a short reason) if it is not one."""
    try:
        data: Any = json.loads(text)
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


def read_snapshots(lines: Iterable[str]) -> JsonlSnapshots:
    """Snapshots from an iterable of lines (an open file, ``sys.stdin``, a list).

    Blank lines are skipped silently; every other line either yields a
    snapshot or a :class:`MalformedLine`.
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
    return JsonlSnapshots(tuple(snapshots), tuple(malformed), count)
