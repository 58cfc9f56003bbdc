"""From a hook's exception to a snapshot in the ring: the one straight line every fault follows.

hook → :func:`capture_fault` → ``classify`` → :class:`ResetContextSnapshot`
→ ``Runtime.publish`` (ring buffer, span event, metrics).

Runs only on the fault path, so it may allocate and format freely; it must
still never raise (callers wrap it) and never change the exception.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from . import _runtime
from ._classify import Classification, HookFacts, classify, walk_chain
from ._connection import ConnectionHistory
from ._redact import redact_message, redact_url
from ._snapshot import FaultKind, Phase, ResetContextSnapshot
from ._trace_context import current_trace_ids

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "capture_fault",
    "capture_idle_close",
    "capture_peer_eof",
    "error_type_name",
    "first_message",
]

_last_lock = threading.Lock()
_last_recorded: list[BaseException | None] = [None]
"""The exception recorded last, so one re-raised past a second hook (a failed
lookup seen by both ``loop.getaddrinfo`` and ``create_connection``) is not
recorded twice. Only one is held: it keeps its traceback's frames alive, and an
id alone would not do (ids are reused as soon as an exception is freed, which
in a fault storm happens constantly)."""


def reset_after_fork() -> None:
    """In a forked child: a fresh lock, no memory of the parent's exceptions."""
    global _last_lock  # noqa: PLW0603
    _last_lock = threading.Lock()
    _last_recorded[0] = None


def error_type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def first_message(exc: BaseException) -> str:
    """``str(exc)``, or the first non-empty message down its chain.

    httpx/anyio often raise ``ReadError('')``; the useful text ("Connection reset
    by peer") is further down.
    """
    for item in walk_chain(exc):
        try:
            text = str(item)
        except Exception:
            continue
        if text:
            return text if item is exc else f"{text} (from {error_type_name(item)})"
    return ""


def _seen_before(exc: BaseException) -> bool:
    """True if this exception object already produced a snapshot (re-raised upward)."""
    with _last_lock:
        if _last_recorded[0] is exc:
            return True
        _last_recorded[0] = exc
    return False


def _request_fields(request: Any) -> tuple[str | None, str | None]:
    """(method, redacted url) from an aiohttp ``ClientRequest`` or httpcore ``Request``."""
    if request is None:
        return None, None
    method = getattr(request, "method", None)
    if isinstance(method, bytes):
        method = method.decode("ascii", "replace")
    url = getattr(request, "url", None)
    if url is None:
        return method, None
    if hasattr(url, "scheme") and isinstance(getattr(url, "scheme", None), bytes):
        # httpcore.URL: bytes parts
        port = f":{url.port}" if url.port is not None else ""
        text = (
            f"{url.scheme.decode('ascii', 'replace')}://"
            f"{url.host.decode('ascii', 'replace')}{port}{url.target.decode('ascii', 'replace')}"
        )
    else:
        text = str(url)
    return method, redact_url(text)


def capture_fault(
    *,
    library: str,
    exc: BaseException,
    facts: HookFacts,
    history: ConnectionHistory | None = None,
    in_request: bool = True,
    request: Any = None,
    server_address: str | None = None,
    server_port: int | None = None,
    extra: Mapping[str, Any] | None = None,
    trace_ids: tuple[str | None, str | None] | None = None,
) -> ResetContextSnapshot | None:
    """Classify ``exc`` and, if it is a connection fault, record its snapshot.

    ``extra`` overrides snapshot fields; ``trace_ids`` replaces the ids of the
    span active now (asyncio transports fail in loop callbacks, outside the
    context that made them).

    Returns the snapshot (or ``None`` when not instrumented, suppressed,
    not a fault, or already recorded by a lower hook).
    """
    runtime = _runtime.RUNTIME
    if runtime is None or not is_instrumentation_enabled():
        return None
    classification = classify(exc, facts)
    if classification is None or _seen_before(exc):
        return None
    return _publish(
        runtime,
        classification,
        library=library,
        exc=exc,
        history=history,
        in_request=in_request,
        request=request,
        server_address=server_address,
        server_port=server_port,
        extra=extra,
        trace_ids=trace_ids,
    )


def _publish(
    runtime: _runtime.Runtime,
    classification: Classification,
    *,
    library: str,
    exc: BaseException | None,
    history: ConnectionHistory | None,
    extra: Mapping[str, Any] | None,
    in_request: bool = False,
    request: Any = None,
    server_address: str | None = None,
    server_port: int | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    trace_ids: tuple[str | None, str | None] | None = None,
) -> ResetContextSnapshot:
    now = time.monotonic()
    # A fault outside any request (an idle pooled connection closing) runs in
    # an event-loop callback whose context belongs to nobody: no trace.
    if trace_ids is not None:
        trace_id, span_id = trace_ids
    elif in_request:
        trace_id, span_id = current_trace_ids()
    else:
        trace_id = span_id = None
    fields: dict[str, Any] = {}
    if history is not None:
        fields.update(history.fault_fields(now, in_request))
        if server_address is None:
            server_address = history.server_address
            server_port = history.server_port
        if request is None and in_request:
            request = history.request
    method, url = _request_fields(request)
    if extra:
        fields.update(extra)
    snapshot = ResetContextSnapshot(
        kind=classification.kind,
        timestamp_ns=time.time_ns(),
        library=library,
        phase=str(classification.phase),
        error_type=error_type if error_type is not None else error_type_name(exc),  # type: ignore[arg-type]
        error_message=redact_message(
            error_message if error_message is not None else classification.message
        ),
        errno=classification.errno,
        trace_id=trace_id,
        span_id=span_id,
        server_address=server_address,
        server_port=server_port,
        http_method=method,
        url=url,
        **fields,
    )
    runtime.publish(snapshot)
    return snapshot


def capture_idle_close(
    *,
    library: str,
    history: ConnectionHistory,
    exc: BaseException | None,
    trace_ids: tuple[str | None, str | None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ResetContextSnapshot | None:
    """The peer closed a pooled connection while it sat idle (FIN or RST).

    The per-peer evidence is kept even when ``capture_idle_closes`` is off; only
    the snapshot is skipped.
    """
    runtime = _runtime.RUNTIME
    if runtime is None or not is_instrumentation_enabled():
        return None
    now = time.monotonic()
    if history.idle_since is not None:
        history.peer.record_idle_close(now - history.idle_since)
    if not runtime.settings.capture_idle_closes:
        return None
    classification = Classification(
        kind=FaultKind.PEER_CLOSED_IDLE,
        phase=Phase.IDLE.value,
        errno=getattr(exc, "errno", None) if exc is not None else None,
        rule="idle_close",
    )
    return _publish(
        runtime,
        classification,
        library=library,
        exc=exc,
        history=history,
        extra=extra,
        error_type=error_type_name(exc) if exc is not None else "EOF",
        error_message=first_message(exc) if exc is not None else "peer closed the idle connection",
        trace_ids=trace_ids,
    )


def capture_peer_eof(
    *,
    library: str,
    history: ConnectionHistory,
    phase: str,
    trace_ids: tuple[str | None, str | None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ResetContextSnapshot | None:
    """The peer closed (FIN) a connection that was waiting for its answer."""
    runtime = _runtime.RUNTIME
    if runtime is None or not is_instrumentation_enabled():
        return None
    return _publish(
        runtime,
        Classification(FaultKind.CONNECTION_RESET, phase, None, "peer_eof"),
        library=library,
        exc=None,
        history=history,
        extra=extra,
        error_type="EOF",
        error_message="the peer closed the connection before answering",
        trace_ids=trace_ids,
    )
