"""A snapshot on the wire: its attribute names (README, "Where snapshots go"), both ways.

Each snapshot becomes one OTel log record (``event_name`` =
``seedance.connection.fault``) and one span event, both carrying these
attributes. Names follow the semantic conventions where one exists
(``server.address``, ``network.peer.address``, ``error.type``,
``tls.protocol.version`` ...) and ``seedance.*`` otherwise. Durations are in
seconds. :func:`snapshot_from_attributes` reverses the mapping (the receiver
and ``diagnose`` use it), so the JSONL written from OTLP is the same as the
JSONL written in-process.

OTel has no null and the semantic conventions no placeholders: an unknown
value is an absent attribute, never ``""``, ``0`` or ``"(none)"``.
``error.type`` / ``exception.*`` describe a real exception only: a FIN is
not one (the snapshot's ``error_type`` reads ``EOF`` then) and a peer closing
an idle connection is not an error at all; the fault's own description then
travels as ``seedance.fault.message``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from opentelemetry.util.http import sanitize_method

from .._snapshot import NO_EXCEPTION, FaultKind, ResetContextSnapshot, new_snapshot

__all__ = [
    "EVENT_NAME",
    "FIELD_TO_ATTRIBUTE",
    "NO_EXCEPTION",
    "PER_FAULT_ATTRIBUTES",
    "PER_FAULT_FIELDS",
    "SHARED_FIELDS",
    "WIRE_ATTRIBUTES",
    "fault_error_type",
    "http_method_attributes",
    "protocol_version",
    "read_per_fault",
    "shared_attributes",
    "snapshot_from_attributes",
    "snapshot_to_attributes",
]

EVENT_NAME = "seedance.connection.fault"

# snapshot field -> attribute name (fields not listed are handled below)
FIELD_TO_ATTRIBUTE: dict[str, str] = {
    "kind": "seedance.fault.kind",
    "phase": "seedance.fault.phase",
    "library": "seedance.library",
    "server_address": "server.address",
    "server_port": "server.port",
    "peer_address": "network.peer.address",
    "peer_port": "network.peer.port",
    "local_port": "network.local.port",
    "socket_cookie": "seedance.socket.cookie",
    "connection_reused": "seedance.connection.reused",
    "connection_idle_s": "seedance.connection.idle",
    "connection_age_s": "seedance.connection.age",
    "connection_requests": "seedance.connection.requests",
    "alpn_offered": "seedance.tls.alpn.offered",
    "alpn_negotiated": "tls.next_protocol",
    "url": "url.full",
    "errno": "seedance.errno",
    "dns_question": "dns.question.name",
    "dns_duration_s": "seedance.dns.duration",
    "peer_reuse_ok_max_idle_s": "seedance.peer.reuse_ok.max_idle",
    "peer_reuse_ok_count": "seedance.peer.reuse_ok.count",
    "client_library": "seedance.client.library",
    "peer_addresses_tried": "seedance.peer.addresses_tried",
    "timestamp_ns": "seedance.timestamp_ns",
    "collapsed_count": "seedance.collapsed.count",
    "collapsed_since_ns": "seedance.collapsed.since_ns",
}
_ATTRIBUTE_TO_FIELD = {v: k for k, v in FIELD_TO_ATTRIBUTE.items()}

WIRE_ATTRIBUTES: frozenset[str] = frozenset(
    (
        *FIELD_TO_ATTRIBUTE.values(),
        "http.request.method",
        "http.request.method_original",
        "network.protocol.version",
        "error.type",
        "exception.type",
        "exception.message",
        "seedance.fault.message",
        "tls.protocol.name",
        "tls.protocol.version",
    )
)
"""Every attribute a fault record may carry (the README's list, Loki's labels)."""


# ALPN protocol id -> network.protocol.version (the HTTP version it selects).
_ALPN_VERSIONS = {"h2": "2", "h2c": "2", "http/1.1": "1.1", "http/1.0": "1.0", "h3": "3"}


def protocol_version(alpn_negotiated: str | None) -> str | None:
    """``network.protocol.version`` from the negotiated ALPN (``h2`` -> ``2``)."""
    if alpn_negotiated is None:
        return None
    return _ALPN_VERSIONS.get(alpn_negotiated)


def fault_error_type(snapshot: ResetContextSnapshot) -> str | None:
    """``error.type`` of a snapshot, or ``None`` when the fault is no error.

    A peer closing an idle connection is normal; a FIN while waiting for an
    answer is a failed request with no exception behind it.
    """
    if snapshot.kind is FaultKind.PEER_CLOSED_IDLE or snapshot.error_type == NO_EXCEPTION:
        return None
    return snapshot.error_type


def http_method_attributes(method: str | None) -> dict[str, str]:
    """``http.request.method`` as the semantic conventions normalise it.

    A method outside the known set becomes ``_OTHER`` with the original in
    ``http.request.method_original`` (contrib's ``sanitize_method``, which
    ``OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS`` also governs).
    """
    if method is None:
        return {}
    sanitized = sanitize_method(method)
    if sanitized == method:
        return {"http.request.method": method}
    return {"http.request.method": sanitized, "http.request.method_original": method}


def _tls_protocol(version: str) -> tuple[str, str] | None:
    """``"TLSv1.3"`` -> ``("tls", "1.3")`` as the semantic conventions split it."""
    lowered = version.lower()
    for prefix in ("tlsv", "sslv"):
        if lowered.startswith(prefix):
            return prefix[:-1], version[len(prefix) :]
    return None


PER_FAULT_FIELDS: tuple[str, ...] = (
    "local_port",
    "socket_cookie",
    "connection_idle_s",
    "connection_age_s",
    "connection_requests",
    "url",
    "dns_duration_s",
    "peer_reuse_ok_max_idle_s",
    "peer_reuse_ok_count",
    "timestamp_ns",
    "collapsed_count",
    "collapsed_since_ns",
)
"""Fields whose values differ from one fault to the next (times, ports,
counts, the URL). Their attributes come last: everything before them is the
same for every fault of one peer, kind and error, which is what lets the
OTLP encoder keep that part's bytes (:mod:`.otlp_encoding`)."""

_SHARED_PAIRS = tuple(
    (field, attribute)
    for field, attribute in FIELD_TO_ATTRIBUTE.items()
    if field not in PER_FAULT_FIELDS
)
PER_FAULT_ATTRIBUTES: tuple[str, ...] = tuple(FIELD_TO_ATTRIBUTE[f] for f in PER_FAULT_FIELDS)
_read_shared = operator.attrgetter(*(field for field, _ in _SHARED_PAIRS))
read_per_fault = operator.attrgetter(*PER_FAULT_FIELDS)
"""The per-fault fields' values, in :data:`PER_FAULT_ATTRIBUTES` order."""

SHARED_FIELDS: tuple[str, ...] = (
    *(field for field, _ in _SHARED_PAIRS),
    "http_method",
    "error_type",
    "error_message",
    "tls_version",
)
"""Every field :func:`shared_attributes` reads: equal values give equal attributes."""


def snapshot_to_attributes(snapshot: ResetContextSnapshot) -> dict[str, Any]:
    """OTel attributes of ``snapshot``; absent values are left out (OTel has no null).

    The per-fault attributes follow the shared ones (see :data:`PER_FAULT_FIELDS`)."""
    out = shared_attributes(snapshot)
    for attribute, value in zip(PER_FAULT_ATTRIBUTES, read_per_fault(snapshot), strict=True):
        if value is not None:
            out[attribute] = value
    return out


def shared_attributes(snapshot: ResetContextSnapshot) -> dict[str, Any]:
    """The attributes of ``snapshot`` read from :data:`SHARED_FIELDS` only."""
    out: dict[str, Any] = {
        attribute: value
        for (_field, attribute), value in zip(_SHARED_PAIRS, _read_shared(snapshot), strict=True)
        if value is not None
    }
    out["seedance.fault.kind"] = snapshot.kind.value
    if snapshot.alpn_offered is not None:
        out["seedance.tls.alpn.offered"] = list(snapshot.alpn_offered)
    if snapshot.peer_addresses_tried is not None:
        out["seedance.peer.addresses_tried"] = list(snapshot.peer_addresses_tried)
    out.update(http_method_attributes(snapshot.http_method))
    version = protocol_version(snapshot.alpn_negotiated)
    if version is not None:
        out["network.protocol.version"] = version
    error_type = fault_error_type(snapshot)
    if error_type is not None:
        out["error.type"] = error_type
    if snapshot.error_type != NO_EXCEPTION:
        out["exception.type"] = snapshot.error_type
        if snapshot.error_message:
            out["exception.message"] = snapshot.error_message
    elif snapshot.error_message:
        out["seedance.fault.message"] = snapshot.error_message
    if snapshot.tls_version:
        split = _tls_protocol(snapshot.tls_version)
        if split is not None:
            out["tls.protocol.name"], out["tls.protocol.version"] = split
        else:
            out["tls.protocol.version"] = snapshot.tls_version
    return out


def snapshot_from_attributes(
    attributes: Mapping[str, Any],
    *,
    timestamp_ns: int | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
    trace_sampled: bool | None = None,
) -> ResetContextSnapshot:
    """Rebuild a snapshot from its wire attributes (raises on missing required ones).

    The trace comes from the log record (its ids and flags), not from attributes."""
    values: dict[str, Any] = {}
    for attribute, value in attributes.items():
        field = _ATTRIBUTE_TO_FIELD.get(attribute)
        if field is not None:
            values[field] = value
    if "alpn_offered" in values and values["alpn_offered"] is not None:
        values["alpn_offered"] = tuple(str(p) for p in values["alpn_offered"])
    if values.get("peer_addresses_tried") is not None:
        values["peer_addresses_tried"] = tuple(str(p) for p in values["peer_addresses_tried"])
    name = attributes.get("tls.protocol.name")
    version = attributes.get("tls.protocol.version")
    if version is not None:
        values["tls_version"] = (
            f"{str(name).upper()}v{version}" if name in ("tls", "ssl") else str(version)
        )
    values["kind"] = FaultKind(values["kind"])
    method = attributes.get("http.request.method_original", attributes.get("http.request.method"))
    if method is not None:
        values["http_method"] = str(method)
    exception_type = attributes.get("exception.type")
    values["error_type"] = str(exception_type) if exception_type is not None else NO_EXCEPTION
    message = attributes.get(
        "exception.message" if exception_type is not None else "seedance.fault.message", ""
    )
    values["error_message"] = str(message)
    values.setdefault("timestamp_ns", timestamp_ns or 0)
    values["trace_id"] = trace_id
    values["span_id"] = span_id
    values["trace_sampled"] = trace_sampled if trace_id is not None else None
    return new_snapshot(**values)
