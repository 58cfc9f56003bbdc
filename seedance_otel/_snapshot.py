"""The record of one connection fault, and the kinds of fault we tell apart.

A :class:`ResetContextSnapshot` is immutable and self-contained: it holds only
strings, numbers and tuples, so it can cross threads, sit in the ring buffer,
be serialised to OTLP or JSON, and be diagnosed later without any reference to
the live connection, request or exception it came from.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from ._frozen import fast_constructor

__all__ = ["NO_EXCEPTION", "FaultKind", "Phase", "ResetContextSnapshot", "new_snapshot"]

NO_EXCEPTION = "EOF"
"""``error_type`` when no exception was raised: the peer's FIN
(``connection_reset`` while waiting for an answer, or ``peer_closed_idle``)."""


class FaultKind(str, enum.Enum):
    """What went wrong, as far as the evidence tells.

    ``str``-valued so it compares equal to its wire form (``"connection_reset"``).
    The exceptions behind each kind are listed in the README.
    """

    CONNECTION_RESET = "connection_reset"
    """The peer ended the connection abruptly: TCP RST (ECONNRESET, EPIPE) or EOF
    before a complete response, in any phase."""
    DNS_TIMEOUT = "dns_timeout"
    """Name resolution did not answer in time (resolver timeout, EAI_AGAIN, or
    the client's own timeout firing while resolving)."""
    DNS_ERROR = "dns_error"
    """Name resolution answered with an error (no such name, no address)."""
    ALPN_MISMATCH = "alpn_mismatch"
    """The TLS handshake failed with alert ``no_application_protocol``, or the
    server spoke a protocol the client never negotiated."""
    TLS_ERROR = "tls_error"
    """Certificate verification or another TLS protocol failure."""
    CONNECT_REFUSED = "connect_refused"
    """The peer answered the SYN with a RST (ECONNREFUSED)."""
    CONNECT_TIMEOUT = "connect_timeout"
    """The TCP connect or TLS handshake did not finish in time."""
    READ_TIMEOUT = "read_timeout"
    """The peer did not send (more of) the response in time."""
    WRITE_TIMEOUT = "write_timeout"
    """The request could not be written in time."""
    POOL_TIMEOUT = "pool_timeout"
    """No pooled connection became free in time (pool exhaustion)."""
    PEER_CLOSED_IDLE = "peer_closed_idle"
    """The peer closed a pooled connection while it sat idle. Not an error the
    caller sees; evidence of the peer's idle timeout."""

    def __str__(self) -> str:
        return self.value


class Phase(str, enum.Enum):
    """Where in the life of a request the fault happened."""

    DNS = "dns"
    POOL = "pool"
    CONNECT = "connect"
    TLS = "tls"
    REQUEST = "request"
    RESPONSE = "response"
    IDLE = "idle"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResetContextSnapshot:
    """Everything known about one connection fault at the moment it happened.

    Field names and types are the public contract (README, "What a snapshot
    holds"; changed only with a CHANGELOG entry); the wire attribute names are
    in :mod:`seedance_otel.exporting.attributes`.
    """

    kind: FaultKind
    timestamp_ns: int
    library: str
    phase: str
    error_type: str
    error_message: str
    trace_id: str | None = None
    span_id: str | None = None
    trace_sampled: bool | None = None
    """The span's sampled flag (``None``: unknown, or no span); log records
    carry it as their trace flags."""
    server_address: str | None = None
    server_port: int | None = None
    peer_address: str | None = None
    peer_port: int | None = None
    local_port: int | None = None
    socket_cookie: int | None = None
    connection_reused: bool | None = None
    connection_idle_s: float | None = None
    connection_age_s: float | None = None
    connection_requests: int | None = None
    alpn_offered: tuple[str, ...] | None = None
    alpn_negotiated: str | None = None
    tls_version: str | None = None
    http_method: str | None = None
    url: str | None = None
    errno: int | None = None
    dns_question: str | None = None
    dns_duration_s: float | None = None
    peer_reuse_ok_max_idle_s: float | None = None
    """Longest idle time after which a reuse of a connection to this peer still
    succeeded, as of the fault (the lower bracket of the peer's idle timeout)."""
    peer_reuse_ok_count: int | None = None
    """Successful reuses of connections to this peer, as of the fault."""
    client_library: str | None = None
    """The client library that made a plain asyncio connection (library
    ``asyncio``): the top-level package of the code that made it (``redis``,
    ``asyncpg``, ``websockets``, ...); ``None`` for aiohttp and httpx."""
    peer_addresses_tried: tuple[str, ...] | None = None
    """Every peer address a failed connect tried, in order, when it tried more
    than one (several addresses behind the name, happy eyeballs);
    ``peer_address`` is the last."""
    collapsed_count: int | None = None
    """In a fault storm: how many more faults of the same key (server, kind,
    library, phase, error type) this snapshot stands for, beyond its own, that
    were counted instead of recorded (see ``SEEDANCE_OTEL_COLLAPSE_PER_S``)."""
    collapsed_since_ns: int | None = None
    """When the first of those faults happened (wall clock, ns)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready mapping (enum as its value, tuple as a list)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResetContextSnapshot:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, bad types raise."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["kind"] = FaultKind(values["kind"])
        for name in ("alpn_offered", "peer_addresses_tried"):
            if values.get(name) is not None:
                values[name] = tuple(str(p) for p in values[name])
        return cls(**values)


new_snapshot = fast_constructor(ResetContextSnapshot)
"""Builds a :class:`ResetContextSnapshot` on the capture path: the same
arguments and the same result, about 40,000 instructions (35 ``object.__setattr__``
calls) fewer (see :mod:`seedance_otel._frozen`)."""
