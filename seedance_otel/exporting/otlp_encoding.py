"""Snapshots straight to the bytes of an OTLP ``ExportLogsServiceRequest``.

The SDK's ``encode_logs`` builds one protobuf message object per attribute,
value and record in Python: about 90 us per ~26-attribute snapshot here,
holding the GIL, which caps shipping near 9,000 snapshots/s and stalls an
application's event loop. Building the same messages with
opentelemetry-proto's generated classes directly measured 75-85 us (the cost
is the per-field object churn, not the SDK's code around it); writing the
wire format, 12-15 us.

This module writes the protobuf wire format itself, for the one message
shape we send, from the attributes :func:`~.attributes.snapshot_to_attributes`
gives (the wire mapping is not repeated here). What makes it cheap:

* the resource and the instrumentation scope are encoded once per sink;
* an attribute's whole encoded ``KeyValue`` field is cached per key and
  value (one bounded table per key and value type), so the values a fault
  storm repeats - peer, kind, library, error, message - cost a dict look-up
  each; floats and booleans use per-key prefixes;
* absent values were already left out by the attribute mapping, and zero
  scalars are omitted as proto3 does.

The output is what the SDK's own encoder produces for the same snapshots,
byte for byte (fields in field-number order, proto3 defaults omitted, the
same ``LogRecord`` fields set as :func:`~.sinks.to_log_records` sets);
``tests/test_otlp_encoding.py`` checks it against ``encode_logs``. Field
numbers are those of ``opentelemetry/proto/logs/v1/logs.proto`` and
``common/v1/common.proto``, stable since OTLP 1.0.
"""

from __future__ import annotations

import functools
import operator
import struct
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from types import NoneType
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from .._snapshot import ResetContextSnapshot
from .attributes import (
    EVENT_NAME,
    PER_FAULT_ATTRIBUTES,
    PER_FAULT_FIELDS,
    SHARED_FIELDS,
    shared_attributes,
)

__all__ = ["LogsRequestEncoder", "encode_value"]

_SEVERITY_WARN = 13
"""``SeverityNumber.WARN`` (logs.proto)."""

_CACHE_LIMIT = 1024
"""Cached encodings per attribute key before its table is emptied and
refilled: bounds the memory (at most a few MiB over ~30 keys) whatever the
values' cardinality."""


def _varint(value: int) -> bytes:
    """Unsigned base-128 varint; negative int64 values as their 64-bit two's complement."""
    if value < 0:
        value &= 0xFFFF_FFFF_FFFF_FFFF
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:  # counts, lengths: two bytes without the loop
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0x20_0000:  # ephemeral ports (32768 and up), socket cookies: three
        return bytes(((value & 0x7F) | 0x80, (value >> 7 & 0x7F) | 0x80, value >> 14))
    if value < 0x1000_0000:  # socket cookies of a long-running host: four
        return bytes(
            (
                (value & 0x7F) | 0x80,
                (value >> 7 & 0x7F) | 0x80,
                (value >> 14 & 0x7F) | 0x80,
                value >> 21,
            )
        )
    if 1 << 56 <= value < 1 << 63:  # timestamps in ns: nine bytes, unrolled
        return bytes(
            (
                (value & 0x7F) | 0x80,
                (value >> 7 & 0x7F) | 0x80,
                (value >> 14 & 0x7F) | 0x80,
                (value >> 21 & 0x7F) | 0x80,
                (value >> 28 & 0x7F) | 0x80,
                (value >> 35 & 0x7F) | 0x80,
                (value >> 42 & 0x7F) | 0x80,
                (value >> 49 & 0x7F) | 0x80,
                value >> 56,
            )
        )
    out = []
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    return tag + (_SMALL[size] if size < 0x80 else _varint(size)) + payload


_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack

# AnyValue fields (common.proto): string 1, bool 2, int 3, double 4, array 5,
# kvlist 6, bytes 7. ArrayValue / KeyValueList: values 1. KeyValue: key 1, value 2.
_TRUE = b"\x10\x01"
_FALSE = b"\x10\x00"


def encode_value(value: Any) -> bytes:
    """The serialized ``AnyValue`` of a value, mapped as the SDK's ``_encode_value`` maps it."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", encode_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(
            b"\x32",
            b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()),
        )
    raise TypeError(f"invalid attribute value type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", key.encode("utf-8")) + _field(b"\x12", encode_value(value))


def _attributes(attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated ``KeyValue`` fields numbered 1 (Resource, InstrumentationScope)."""
    if not attributes:
        return b""
    return b"".join(_field(b"\x0a", _key_value(k, v)) for k, v in attributes.items())


# LogRecord fields (logs.proto): time_unix_nano 1 (fixed64), severity_number 2,
# severity_text 3, body 5, attributes 6, flags 8 (fixed32), trace_id 9,
# span_id 10, observed_time_unix_nano 11 (fixed64), event_name 12.
_SEVERITY = b"\x10" + _varint(_SEVERITY_WARN) + _field(b"\x1a", b"WARN")
_EVENT_NAME = _field(b"\x62", EVENT_NAME.encode("utf-8"))
_ATTRIBUTE_TAG = b"\x32"


class LogsRequestEncoder:
    """Encodes batches of snapshots for one resource and scope (one per sink).

    Used from the shipper's thread only: the caches are not locked.
    """

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        # ResourceLogs: resource 1, scope_logs 2, schema_url 3.
        self._resource = _field(b"\x0a", _attributes(resource.attributes))
        self._resource_schema = (
            _field(b"\x1a", resource.schema_url.encode("utf-8")) if resource.schema_url else b""
        )
        # ScopeLogs: scope 1, log_records 2, schema_url 3.
        # InstrumentationScope: name 1, version 2, attributes 3.
        encoded_scope = b""
        if scope.name:
            encoded_scope += _field(b"\x0a", scope.name.encode("utf-8"))
        if scope.version:
            encoded_scope += _field(b"\x12", scope.version.encode("utf-8"))
        encoded_scope += b"".join(
            _field(b"\x1a", _key_value(k, v)) for k, v in (scope.attributes or {}).items()
        )
        self._scope = _field(b"\x0a", encoded_scope)
        self._scope_schema = (
            _field(b"\x1a", scope.schema_url.encode("utf-8")) if scope.schema_url else b""
        )
        # Per attribute key, its encoded field by value, one table per value
        # type (``True == 1 == 1.0``: a shared table would mix them up).
        self._strings: dict[str, dict[str, bytes]] = {}
        self._ints: dict[str, dict[int, bytes]] = {}
        self._texts: dict[str, dict[tuple[str, ...], bytes]] = {}
        self._bools: dict[tuple[str, bool], bytes] = {}
        self._floats: dict[str, bytes] = {}
        """Per key: the constant head of its double-valued field (the value is 8 bytes)."""
        self._shared: dict[tuple[Any, ...], bytes] = {}
        """Severity, body and shared attributes of a record, by the values of the
        fields they come from (:data:`~.attributes.SHARED_FIELDS`)."""

    def encode(self, snapshots: Sequence[ResetContextSnapshot], observed_ns: int) -> bytes:
        """The serialized request: one ``ResourceLogs``, one ``ScopeLogs``, the batch's records."""
        return self.request(self.encode_records(snapshots, observed_ns))

    def encode_records(
        self,
        snapshots: Sequence[ResetContextSnapshot],
        observed_ns: int,
        *,
        pause: Callable[[], object] | None = None,
        slice_s: float = 2e-4,
    ) -> list[bytes]:
        """Each snapshot's ``log_records`` field, ready for :meth:`request`.

        Encoding holds the GIL: with ``pause``, it is called whenever
        ``slice_s`` of encoding has passed since the last one (checked every
        8 records), and the caller lets other threads run there.
        """
        observed = b"\x59" + _pack_fixed64(observed_ns) if observed_ns else b""
        encode_record = self.encode_record
        if pause is None:
            return [_field(b"\x12", encode_record(s, observed)) for s in snapshots]
        records: list[bytes] = []
        since = time.perf_counter()
        for start in range(0, len(snapshots), 8):
            records += [
                _field(b"\x12", encode_record(s, observed)) for s in snapshots[start : start + 8]
            ]
            if time.perf_counter() - since >= slice_s and start + 8 < len(snapshots):
                pause()
                since = time.perf_counter()
        return records

    def request(self, records: Sequence[bytes]) -> bytes:
        """The serialized ``ExportLogsServiceRequest`` holding ``records`` (from
        :meth:`encode_records`); empty when there are none."""
        if not records:
            return b""
        # One join: a request is up to a few hundred KiB, and each ``+`` of
        # the nested fields would copy all of it again while holding the GIL.
        scope_logs_size = len(self._scope) + sum(map(len, records)) + len(self._scope_schema)
        scope_logs_head = b"\x12" + _varint(scope_logs_size)
        resource_logs_size = (
            len(self._resource)
            + len(scope_logs_head)
            + scope_logs_size
            + len(self._resource_schema)
        )
        return b"".join(
            [
                b"\x0a",
                _varint(resource_logs_size),
                self._resource,
                scope_logs_head,
                self._scope,
                *records,
                self._scope_schema,
                self._resource_schema,
            ]
        )

    def encode_record(self, snapshot: ResetContextSnapshot, observed: bytes) -> bytes:
        """One serialized ``LogRecord`` (``observed``: its encoded observed-time field)."""
        key = _read_shared(snapshot)
        try:
            shared = self._shared.get(key)
        except TypeError:  # a list where a tuple belongs: unhashable, never kept
            shared = None
        # ``True == 1 == 1.0``: a kept part serves only exact ints and bools.
        if shared is None or not _exact_numbers(key):
            shared = self._encode_shared(snapshot, key)
        parts = [
            b"\x09" + _pack_fixed64(snapshot.timestamp_ns) if snapshot.timestamp_ns else b"",
            shared,
        ]
        append = parts.append
        _write_per_fault(snapshot, append, self._strings)
        # ``trace_sampled``: the span's sampled flag, on snapshots that keep it.
        append(_trace_fields(snapshot.trace_id, snapshot.span_id, snapshot.trace_sampled))
        append(observed)
        append(_EVENT_NAME)
        return b"".join(parts)

    def _encode_shared(self, snapshot: ResetContextSnapshot, key: tuple[Any, ...]) -> bytes:
        """Severity, body and the shared attributes of ``snapshot``, kept under ``key`` when
        its ints, bools and string tuples are exactly that (see :meth:`encode_record`)."""
        message = snapshot.error_message or snapshot.error_type
        body = _field(b"\x0a", f"{snapshot.kind.value}: {message}".encode())
        encoded = b"".join(
            [
                _SEVERITY,
                _field(b"\x2a", body),
                *self._encode_attributes(shared_attributes(snapshot)),
            ]
        )
        if _keepable(key):
            shared = self._shared
            if len(shared) >= _CACHE_LIMIT:
                shared.clear()
            shared[key] = encoded
        return encoded

    def _encode_attributes(self, attributes: Mapping[str, Any]) -> list[bytes]:
        """Each attribute's field, from the per-key tables where a value was seen before."""
        out: list[bytes] = []
        append = out.append
        strings, ints, floats = self._strings, self._ints, self._floats
        bools, texts = self._bools, self._texts
        table: dict[Any, bytes] | None
        for key, value in attributes.items():
            cls = value.__class__
            if cls is str:
                table = strings.get(key)
                encoded = table.get(value) if table is not None else None
                if encoded is None:
                    encoded = _remember(strings, key, value, _string_field(key, value))
            elif cls is int:
                table = ints.get(key)
                encoded = table.get(value) if table is not None else None
                if encoded is None:
                    encoded = _remember(ints, key, value, _int_field(key, value))
            elif cls is float:
                head = floats.get(key) or _float_head(floats, key)
                encoded = head + _pack_double(value)
            elif cls is bool:
                encoded = bools.get((key, value)) or _remember_bool(bools, key, value)
            elif cls is list or cls is tuple:
                # ALPN offers. A hit is right: only all-string tuples are
                # kept, and a string equals nothing but a string.
                items = tuple(value)
                table = texts.get(key)
                encoded = table.get(items) if table is not None else None
                if encoded is None:
                    encoded = _attribute(key, items)
                    if all(item.__class__ is str for item in items):
                        _remember(texts, key, items, encoded)
            else:  # anything else: encoded each time
                encoded = _attribute(key, value)
            append(encoded)
        return out


_read_shared = operator.attrgetter(
    # The kind's plain string: hashing the enum member runs Python code.
    *("kind._value_" if field == "kind" else field for field in SHARED_FIELDS)
)
_SERVER_PORT, _PEER_PORT, _ERRNO, _REUSED = (
    SHARED_FIELDS.index(field)
    for field in ("server_port", "peer_port", "errno", "connection_reused")
)
_STRING_TUPLES = tuple(
    SHARED_FIELDS.index(field) for field in ("alpn_offered", "peer_addresses_tried")
)


def _int_heads(key: str) -> tuple[bytes, ...]:
    """Everything before an int attribute's varint, by the varint's length (1-10 bytes)."""
    key_head = _key_head(key)
    heads = [b""]
    for size in range(1, 11):
        key_value_size = len(key_head) + 2 + size  # + AnyValue length + int tag
        heads.append(
            _ATTRIBUTE_TAG + _varint(key_value_size) + key_head + _SMALL[1 + size] + b"\x18"
        )
    return tuple(heads)


def _float_head_of(key: str) -> bytes:
    """Everything before a double attribute's 8 bytes."""
    head = _key_value(key, 0.0)[:-8]
    return _ATTRIBUTE_TAG + _SMALL[len(head) + 8] + head


def _keepable(key: tuple[Any, ...]) -> bool:
    """Whether a shared part may be kept under ``key``: hashable, its ints and bools
    exactly that, its tuples all strings (``(1,) == (True,)``, never ``== ("1",)``)."""
    try:
        hash(key)
    except TypeError:
        return False
    return _exact_numbers(key) and all(
        key[i] is None or all(item.__class__ is str for item in key[i]) for i in _STRING_TUPLES
    )


def _exact_numbers(key: tuple[Any, ...]) -> bool:
    """``key``'s ports and errno are exact ints and its reuse flag an exact bool."""
    return (
        (key[_SERVER_PORT] is None or key[_SERVER_PORT].__class__ is int)
        and (key[_PEER_PORT] is None or key[_PEER_PORT].__class__ is int)
        and (key[_ERRNO] is None or key[_ERRNO].__class__ is int)
        and (key[_REUSED] is None or key[_REUSED].__class__ is bool)
    )


def _float_head(floats: dict[str, bytes], key: str) -> bytes:
    head = floats[key] = _float_head_of(key)
    return head


def _remember_bool(table: dict[tuple[str, bool], bytes], key: str, value: bool) -> bytes:
    encoded = table[key, value] = _attribute(key, value)
    return encoded


def _remember(tables: dict[str, dict[Any, bytes]], key: str, value: Any, encoded: bytes) -> bytes:
    """Keep ``value``'s encoded field in ``key``'s bounded table."""
    table = tables.get(key)
    if table is None:
        table = tables[key] = {}
    elif len(table) >= _CACHE_LIMIT:
        table.clear()  # a high-cardinality key (timestamps, ports) refills its own table only
    table[value] = encoded
    return encoded


def _attribute(key: str, value: Any) -> bytes:
    """One ``attributes`` field of a log record: ``KeyValue{key, value}``."""
    return _field(_ATTRIBUTE_TAG, _key_value(key, value))


@functools.lru_cache(maxsize=256)
def _key_head(key: str) -> bytes:
    """``KeyValue.key`` followed by the tag of ``KeyValue.value``."""
    return _field(b"\x0a", key.encode("utf-8")) + b"\x12"


def _string_field(key: str, value: str) -> bytes:
    """:func:`_attribute` for a string value, without the generic dispatch (cache misses)."""
    return _wrap(_key_head(key), _field(b"\x0a", value.encode("utf-8")))


def _int_field(key: str, value: int) -> bytes:
    """:func:`_attribute` for an int value (timestamps, cookies, ports: mostly misses)."""
    any_value = b"\x18" + _varint(value)  # at most 11 bytes
    key_value = _key_head(key) + _SMALL[len(any_value)] + any_value
    size = len(key_value)
    return _ATTRIBUTE_TAG + (_SMALL[size] if size < 0x80 else _varint(size)) + key_value


def _wrap(head: bytes, any_value: bytes) -> bytes:
    size = len(any_value)
    key_value = head + (_SMALL[size] if size < 0x80 else _varint(size)) + any_value
    size = len(key_value)
    return _ATTRIBUTE_TAG + (_SMALL[size] if size < 0x80 else _varint(size)) + key_value


_SAMPLED_FLAGS = b"\x45\x01\x00\x00\x00"
"""``flags`` (fixed32, field 8) with the W3C sampled bit."""
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


def _trace_fields(trace_id: str | None, span_id: str | None, sampled: bool | None) -> bytes:
    """``flags``, ``trace_id`` and ``span_id``, as the SDK sets them from the record's context.

    Both ids are needed (the record's context is the snapshot's span); an id
    that is zero is omitted, and so is a malformed pair (the SDK would fail
    the whole batch on it). The flags say sampled only when the span was.
    """
    if not (trace_id and span_id):
        return b""
    if len(trace_id) == 32 and len(span_id) == 16:  # the usual form: hex, no parsing as int
        try:
            trace_bytes, span_bytes = bytes.fromhex(trace_id), bytes.fromhex(span_id)
        except ValueError:
            return b""
        if len(trace_bytes) == 16 and len(span_bytes) == 8:  # no spaces between the bytes
            return b"".join(
                (
                    _SAMPLED_FLAGS if sampled else b"",
                    b"\x4a\x10" + trace_bytes if trace_bytes != _ZERO_TRACE else b"",
                    b"\x52\x08" + span_bytes if span_bytes != _ZERO_SPAN else b"",
                )
            )
    try:
        trace = int(trace_id, 16)
        span = int(span_id, 16)
        out = _SAMPLED_FLAGS if sampled else b""
        if trace:
            out += b"\x4a\x10" + trace.to_bytes(16, "big")
        if span:
            out += b"\x52\x08" + span.to_bytes(8, "big")
    except (ValueError, OverflowError):
        return b""
    return out


def _per_fault_value(strings: dict[str, dict[str, bytes]], name: str, value: Any) -> bytes:
    """A per-fault attribute's field for any value: the URL from its key's table,
    numbers by their exact class, anything else (a ``bool``, an ``int``
    subclass) by the generic mapping."""
    cls = value.__class__
    if cls is int:
        varint = _varint(value)
        return _int_heads(name)[len(varint)] + varint
    if cls is float:
        return _float_head_of(name) + _pack_double(value)
    if cls is str:
        table = strings.get(name)
        encoded = table.get(value) if table is not None else None
        if encoded is None:
            encoded = _remember(strings, name, value, _string_field(name, value))
        return encoded
    return _attribute(name, value)


def _per_fault_writer() -> tuple[
    Callable[[ResetContextSnapshot, Callable[[bytes], None], Any], None], str
]:
    """``write(snapshot, append, strings)``, which appends each present per-fault
    field, and its source.

    The per-fault attributes are most of a record's encoding (nine to twelve
    values no cache can serve), so their loop is unrolled: one block per
    field of :data:`~.attributes.PER_FAULT_FIELDS`, its heads bound as
    constants, its expected class tested first (a small int's varint is one
    table look-up). A value of any other class takes
    :func:`_per_fault_value`, so the bytes stay the generic mapping's. Against
    one loop over the fields with a class dispatch per value (and varints of
    three and four bytes made by a loop), a record took 63,567 instructions
    instead of 72,795 (``benchmarks.encoding_instructions``).
    The source is kept in ``_PER_FAULT_SOURCE`` for the reader (and a debugger).
    """
    namespace: dict[str, Any] = {
        "_SMALL": _SMALL,
        "_varint": _varint,
        "_pack_double": _pack_double,
        "_other": _per_fault_value,
    }
    lines = ["def write(snapshot, append, strings):"]
    for i, (field, name) in enumerate(zip(PER_FAULT_FIELDS, PER_FAULT_ATTRIBUTES, strict=True)):
        expected = _PER_FAULT_CLASSES[field]
        namespace[f"NAME_{i}"] = name
        other = f"append(_other(strings, NAME_{i}, value))"
        lines += [f"    value = snapshot.{field}", "    if value is not None:"]
        if expected is int:
            heads = _int_heads(name)
            namespace[f"INT_{i}"] = heads
            namespace[f"INT1_{i}"] = heads[1]
            lines += [
                "        if value.__class__ is int:",
                "            if 0 <= value < 0x80:",
                f"                append(INT1_{i} + _SMALL[value])",
                "            else:",
                "                varint = _varint(value)",
                f"                append(INT_{i}[len(varint)] + varint)",
                "        else:",
                f"            {other}",
            ]
        elif expected is float:
            namespace[f"FLOAT_{i}"] = _float_head_of(name)
            lines += [
                "        if value.__class__ is float:",
                f"            append(FLOAT_{i} + _pack_double(value))",
                "        else:",
                f"            {other}",
            ]
        elif expected is str:
            lines += [
                "        if value.__class__ is str:",
                f"            table = strings.get(NAME_{i})",
                "            encoded = table.get(value) if table is not None else None",
                "            if encoded is None:",
                f"                encoded = _other(strings, NAME_{i}, value)",
                "            append(encoded)",
                "        else:",
                f"            {other}",
            ]
        else:  # declared otherwise: the generic mapping only
            lines.append(f"        {other}")
    source = "\n".join(lines) + "\n"
    exec(compile(source, "<seedance_otel per-fault attributes>", "exec"), namespace)
    return namespace["write"], source


def _declared_classes() -> dict[str, type]:
    """The class each per-fault field is declared with (``int | None`` -> ``int``)."""
    hints = typing.get_type_hints(ResetContextSnapshot)
    declared = {}
    for field in PER_FAULT_FIELDS:
        classes = [
            c for c in typing.get_args(hints[field]) or (hints[field],) if c is not NoneType
        ]
        declared[field] = classes[0] if len(classes) == 1 else object
    return declared


_PER_FAULT_CLASSES = _declared_classes()

_write_per_fault, _PER_FAULT_SOURCE = _per_fault_writer()
