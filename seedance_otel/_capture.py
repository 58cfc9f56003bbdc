"""From a hook's knowledge to a snapshot in the ring: the one straight line every fault follows.

hook → :class:`FaultContext` → :func:`capture` → ``classify`` →
:class:`ResetContextSnapshot` → ``Runtime.publish`` (ring buffer, span event,
metrics).

Every fault, idle close and peer FIN goes this way: a hook fills one typed
context (mypy checks every field it sets) and calls :func:`capture`, which
alone decides the kind (through ``classify``, a FIN included), the trace, and
which of the hook's facts become which snapshot field. URLs and messages are
redacted here, so no hook can forget to.

Runs only on the fault path, so it may allocate and format freely; it must
still never raise (callers wrap it) and never change the exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import NamedTuple

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from . import _runtime
from ._classify import Classification, HookFacts, classify
from ._collapse import Carried, FaultKey
from ._connection import ConnectionFields, ConnectionHistory
from ._dns import DnsFields
from ._library import Library
from ._redact import redact_message, redact_url
from ._snapshot import FaultKind, ResetContextSnapshot, new_snapshot
from ._trace_context import NO_TRACE, TraceIds, current_trace_ids

__all__ = ["FaultContext", "capture"]

_last_recorded: list[BaseException | None] = [None]
"""The exception recorded last, so one re-raised past a second hook (a failed
lookup seen by both ``loop.getaddrinfo`` and ``create_connection``) is not
recorded twice. Only one is held: it keeps its traceback's frames alive, and an
id alone would not do (ids are reused as soon as an exception is freed, which
in a fault storm happens constantly). Read and replaced without a lock: an
exception is raised in one thread, so only faults of other threads can come
between the check and the update, and with or without a lock they replace
the memory as they come."""


def _context_getter() -> Callable[[], Mapping[str, object]]:
    """OpenTelemetry's ``get_current``, or, under its default runtime context,
    the context variable's own ``get`` (a C call instead of two Python calls)."""
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(variable, ContextVar):
        return variable.get
    return otel_context.get_current


try:
    # The keys ``is_instrumentation_enabled`` reads, read by ``capture`` from
    # one lookup of the current context (its own way: two lookups, five calls).
    # ``test_capture_is_suppressed_as_opentelemetry_says`` fails if they move,
    # ``test_capture_reads_the_current_context_as_opentelemetry_does`` if the
    # context variable does.
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as _SUPPRESS
    from opentelemetry.instrumentation.utils import (
        _SUPPRESS_INSTRUMENTATION_KEY_PLAIN as _SUPPRESS_PLAIN,
    )

    _current_context = _context_getter()
except ImportError:  # pragma: no cover - an OpenTelemetry that moved them
    _SUPPRESS = _SUPPRESS_PLAIN = "seedance_otel.suppressed"
    _SUPPRESSED: Mapping[str, object] = {_SUPPRESS: True}

    def _current_context() -> Mapping[str, object]:
        return {} if is_instrumentation_enabled() else _SUPPRESSED


_NO_CONNECTION = ConnectionFields()
_NOT_COLLAPSED = Carried(0, 0)

_FIN_MESSAGES = {
    FaultKind.PEER_CLOSED_IDLE: "peer closed the idle connection",
    FaultKind.CONNECTION_RESET: "the peer closed the connection before answering",
}


class FaultContext(NamedTuple):
    """Everything one hook knows about one fault (built by keyword; a tuple
    because one is built per fault, storms included, and a tuple is the
    cheapest object to build).

    What ``find_connection`` builds wins over what ``history`` would say (a
    connect that failed has no history, only the socket it tried; a
    plain-asyncio stream knows no requests); ``history`` also supplies the
    server and, in a request, the request when the hook did not.

    The details only a full snapshot needs come as functions (``find_*``),
    called by :func:`capture` only when it builds one: a fault counted into a
    storm's key costs none of them.
    """

    library: Library
    exc: BaseException | None
    """``None`` when the peer closed the connection with a FIN (no exception)."""
    facts: HookFacts
    history: ConnectionHistory | None = None
    in_request: bool = True
    """The fault hit a request (its span is current); ``False`` in a loop
    callback or for an idle connection (no trace, unless ``trace_ids``)."""
    request: object | None = None
    """The library's request object; read by ``library.request_fields``."""
    find_connection: Callable[[], ConnectionFields | None] | None = None
    """The connection's fields, when the history does not say them."""
    find_request: Callable[[], object | None] | None = None
    """Finds the request when the hook was not handed it (in the library's
    frames, which are still live while :func:`capture` runs)."""
    server_address: str | None = None
    server_port: int | None = None
    dns: DnsFields | None = None
    trace_ids: TraceIds | None = None
    """The span to blame, when it is not the current one (asyncio transports
    fail in loop callbacks, outside the context that made them)."""
    fin_message: str | None = None
    """For a FIN (``exc`` is ``None``): the hook's account of it, instead of
    the generic message (when it arrived, relative to the write that met it)."""
    client_library: str | None = None
    """The client library that made a plain asyncio connection."""


def reset_after_fork() -> None:
    """In a forked child: no memory of the parent's exceptions."""
    _last_recorded[0] = None


def capture(ctx: FaultContext) -> ResetContextSnapshot | None:
    """Classify what the hook saw and, if it is a connection fault, record its snapshot.

    Returns the snapshot, or ``None`` when not instrumented, suppressed, not a
    fault, already recorded by a lower hook, or an idle close while
    ``capture_idle_closes`` is off (its per-peer evidence is kept even then).
    """
    runtime = _runtime.RUNTIME
    if runtime is None:
        return None
    context = _current_context()
    if context.get(_SUPPRESS) or context.get(_SUPPRESS_PLAIN):
        return None  # OpenTelemetry's suppress_instrumentation()
    exc = ctx.exc
    classification = classify(exc, ctx.facts, ctx.library.exceptions)
    if classification is None:
        return None
    if exc is not None:
        if _last_recorded[0] is exc:
            return None  # re-raised past a second hook: recorded already
        _last_recorded[0] = exc
    if classification.kind is FaultKind.PEER_CLOSED_IDLE:
        history = ctx.history
        if history is not None and history.idle_since is not None:
            history.peer.record_idle_close(time.monotonic() - history.idle_since)
        if not runtime.settings.capture_idle_closes:
            return None
    collapser = runtime.collapser
    if collapser is None:
        snapshot = _snapshot(ctx, classification, _NOT_COLLAPSED)
    else:
        # What makes two faults of a storm the same (see ``_collapse``).
        address, port = ctx.server_address, ctx.server_port
        if address is None and ctx.history is not None:
            address, port = ctx.history.server_address, ctx.history.server_port
        key: FaultKey = (
            address,
            port,
            classification.kind,  # the member: its ``value`` is a Python-level property
            ctx.library.name,
            classification.phase,
            classification.error_type,
        )
        carried = collapser.admit(key, time.monotonic_ns(), time.time_ns())
        if carried is None:
            return None  # counted; the key's next snapshot carries it
        try:
            snapshot = _snapshot(ctx, classification, carried)
        except BaseException:
            collapser.give_back(key, carried)  # owed again, not lost with this one
            raise
        collapser.remember(key, snapshot)
    runtime.publish(snapshot)
    return snapshot


def _trace_ids(ctx: FaultContext) -> TraceIds:
    # A fault outside any request (an idle pooled connection closing) runs in
    # an event-loop callback whose context belongs to nobody: no trace.
    if ctx.trace_ids is not None:
        return ctx.trace_ids
    return current_trace_ids() if ctx.in_request else NO_TRACE


def _method_and_url(ctx: FaultContext, request: object | None) -> tuple[str | None, str | None]:
    """The request's method and its URL, redacted (never a raw URL past here)."""
    reader = ctx.library.request_fields
    if request is None or reader is None:
        return None, None
    method, url = reader(request)
    return method, (redact_url(url) if url is not None else None)


def _snapshot(
    ctx: FaultContext, classification: Classification, carried: Carried
) -> ResetContextSnapshot:
    now = time.monotonic()
    history = ctx.history
    server_address, server_port, request = ctx.server_address, ctx.server_port, ctx.request
    connection = ctx.find_connection() if ctx.find_connection is not None else None
    if history is not None:
        if connection is None:
            connection = history.fault_fields(now, ctx.in_request)
        if server_address is None:
            server_address, server_port = history.server_address, history.server_port
    if request is None and ctx.find_request is not None:
        request = ctx.find_request()
    if request is None and history is not None and ctx.in_request:
        request = history.request
    if connection is None:
        connection = _NO_CONNECTION
    method, url = _method_and_url(ctx, request)
    trace_id, span_id, sampled = _trace_ids(ctx)
    if ctx.exc is not None:
        message = classification.message
    else:
        message = ctx.fin_message or _FIN_MESSAGES.get(classification.kind, "")
    dns = ctx.dns
    return new_snapshot(
        kind=classification.kind,
        timestamp_ns=time.time_ns(),
        library=ctx.library.name,
        phase=classification.phase,
        error_type=classification.error_type,
        error_message=redact_message(message),
        errno=classification.errno,
        trace_id=trace_id,
        span_id=span_id,
        trace_sampled=sampled,
        server_address=server_address,
        server_port=server_port,
        http_method=method,
        url=url,
        peer_address=connection.peer_address,
        peer_port=connection.peer_port,
        local_port=connection.local_port,
        socket_cookie=connection.socket_cookie,
        connection_reused=connection.reused,
        connection_idle_s=connection.idle_s,
        connection_age_s=connection.age_s,
        connection_requests=connection.requests,
        alpn_offered=connection.alpn_offered
        if connection.alpn_offered is not None
        else ctx.facts.alpn_offered,
        alpn_negotiated=connection.alpn_negotiated,
        tls_version=connection.tls_version,
        dns_question=dns.question if dns is not None else None,
        dns_duration_s=dns.duration_s if dns is not None else None,
        peer_reuse_ok_max_idle_s=connection.peer_reuse_ok_max_idle_s,
        peer_reuse_ok_count=connection.peer_reuse_ok_count,
        client_library=ctx.client_library,
        peer_addresses_tried=connection.peer_addresses_tried,
        collapsed_count=carried.count or None,
        collapsed_since_ns=carried.since_ns if carried.count else None,
    )
