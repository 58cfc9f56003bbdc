"""Plain asyncio connections: resets on transports that aiohttp and httpx did not make.

Database drivers, Redis clients and websockets talk to sockets through
``loop.create_connection`` / ``asyncio.open_connection`` / ``loop.start_tls``.
When such a connection is made outside aiohttp and httpx (see ``_layers``), we
attach a :class:`ConnectionHistory` and watch the connection's own activity
by wrapping, on that one protocol and transport instance, the methods the
event loop and the application call: ``data_received``/``buffer_updated`` and
``eof_received`` (reads, peer FIN), ``connection_lost`` (the end), and the
transport's ``write``/``writelines``. The client library that made the
connection (``redis``, ``asyncpg``, ``websockets``) is found once, from the
calling code's module (``asyncio_clients``).

A stream knows no requests, so we see *exchanges*: a write while nothing is
outstanding starts one (the span current at that write is the request's), and
an exchange answered by a read before the next one starts was served. Each
fault says whether the connection was reused (an earlier exchange was served),
how long it sat idle before the write that was hit, its age and how many
exchanges it served. A peer's FIN is timestamped as it arrives (asyncio
reads it even while the application is not reading, unless reading is paused
by a full buffer).

At ``connection_lost``:

* an answer was outstanding -> ``connection_reset``, phase ``request``, with
  the exchange's idle time and trace: an error (RST, EPIPE), a FIN while it
  waited (a server killing a blocked command), or a FIN that had arrived
  while the connection was quiet before the write that met it (a stale
  reuse: the message says when the FIN came);
* nothing outstanding, an error -> ``connection_reset``, phase ``idle``;
* nothing outstanding, a FIN after at least a second of quiet ->
  ``peer_closed_idle`` with the idle time at the FIN;
* our own ``close()``, or a FIN right after an answer -> nothing.

Faults while idle carry the trace of the context that made the connection:
no request was hit.

Handshake failures of ``create_connection(ssl=...)`` and ``start_tls`` are
classified like any other (``alpn_mismatch``, ``tls_error``, ...).

uvloop's loop is compiled and cannot be hooked: connections made on it are
not watched (``instrument()`` says so once); aiohttp and httpx faults are
captured under uvloop as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import importlib.util
import logging
import socket
import ssl
import time
import weakref
from collections.abc import Callable
from typing import Any

from .. import _layers, _runtime
from .._capture import FaultContext, capture
from .._classify import HookFacts
from .._connection import ConnectionFields, ConnectionHistory, socket_facts
from .._guard import Guard, report_internal_error
from .._library import Library
from .._snapshot import Phase
from .._trace_context import NO_TRACE, TraceIds, current_trace_ids
from ._patching import PatchSet
from .asyncio_clients import creating_client
from .ssl_alpn import alpn_offered_by

__all__ = ["UVLOOP_NOTE", "install", "uninstall"]

NAME = "asyncio"
_logger = logging.getLogger("seedance_otel")
_patches = PatchSet(NAME)
_monotonic = time.monotonic

UVLOOP_NOTE = (
    "uvloop is installed: connections made directly on a uvloop event loop "
    "(loop.create_connection, asyncio.open_connection, start_tls) and their DNS "
    "timing are not captured, because uvloop's loop is compiled and cannot be "
    "hooked; aiohttp and httpx faults are captured under uvloop as usual."
)
_uvloop_noted = False


_MIN_IDLE_FOR_IDLE_CLOSE_S = 1.0
"""A FIN this soon after the last data is the protocol ending its conversation
(an HTTP/1.0 answer, a websocket close handshake), not an idle timeout."""

_copy_context = contextvars.copy_context


class _Watch:
    """One watched connection: its exchanges, its last activity, what we shadowed.

    A plain stream knows no requests, so we see them as *exchanges*: a write
    while nothing is outstanding (the last activity was a read, or nothing
    yet) starts one; the writes after it, up to the next read, belong to it.
    An exchange that got a read before the next one started was served.
    """

    __slots__ = (
        "__weakref__",
        "client",
        "eof_at",
        "eof_idle_s",
        "exchange_at",
        "exchange_context",
        "exchange_idle_s",
        "exchange_reused",
        "exchanges_served",
        "history",
        "last_read",
        "last_write",
        "peer_quiet_s",
        "prev_read",
        "reads_visible",
        "shadowed",
        "trace_ids",
    )

    def __init__(
        self,
        history: ConnectionHistory,
        trace_ids: TraceIds,
        client: str | None,
    ):
        self.history = history
        self.trace_ids = trace_ids
        """The context that made the connection: blamed for idle-time faults."""
        self.client = client
        now = history.established_at
        self.last_read = now
        self.last_write = now
        self.eof_at: float | None = None
        """When the peer's FIN arrived (``None``: it did not)."""
        self.eof_idle_s: float | None = None
        """Idle time when the FIN arrived while nothing was outstanding
        (``None``: no FIN, or it came while an answer was awaited)."""
        self.exchange_at: float | None = None
        """When the current (last) exchange's first write happened."""
        self.exchange_idle_s = 0.0
        """Idle time before that write: since the last read (or the connect)."""
        self.exchange_reused = False
        """An earlier exchange on this connection was served."""
        self.exchange_context: contextvars.Context | None = None
        """The context at that write, where the request's span is current."""
        self.exchanges_served = 0
        self.prev_read = now
        """The read before the last one."""
        self.peer_quiet_s = 0.0
        """How long the connection was quiet before the peer's message that
        this exchange's first write followed (see ``_ended_by_peer``)."""
        self.reads_visible = True
        """False when the event loop cached the read callback before we could
        wrap it (a BufferedProtocol under TLS): then reads and FINs are unseen."""
        self.shadowed: list[tuple[Any, str]] = []

    @property
    def awaiting_answer(self) -> bool:
        return self.last_write > self.last_read

    def begin_exchange(self, now: float) -> None:
        """A write while nothing is outstanding: the hot path's only branch.

        Runs once per exchange, not per write: counts the previous exchange as
        served (and, if it was a reuse, as a reuse that worked: the peer's
        idle timeout is above its idle time), and notes the idle time and the
        span of this one.
        """
        if self.exchange_at is not None:
            self.exchanges_served += 1
            if self.exchange_reused:
                self.history.peer.record_reuse_ok(self.exchange_idle_s)
        self.exchange_reused = self.exchanges_served > 0
        self.exchange_idle_s = now - self.last_read
        prev = self.prev_read if self.prev_read > self.last_write else self.last_write
        self.peer_quiet_s = self.last_read - prev
        self.exchange_at = now
        # The context, not the span: copying it costs a pointer (measured
        # 23 ns against 320 ns for get_current_span()); the span, or an
        # OpenTracing one, is read from it only on a fault. asyncio's own
        # callbacks hold contexts the same way.
        self.exchange_context = _copy_context()

    def exchange_trace_ids(self) -> TraceIds:
        """The trace of the exchange in flight (fault path)."""
        context = self.exchange_context
        return context.run(current_trace_ids) if context is not None else NO_TRACE

    def unshadow(self) -> None:
        """Remove our per-instance wrappers (they form reference cycles)."""
        while self.shadowed:
            obj, name = self.shadowed.pop()
            with contextlib.suppress(AttributeError, TypeError):
                delattr(obj, name)


_live_watches: weakref.WeakSet[_Watch] = weakref.WeakSet()


def _wrap_instance_method(watch: _Watch, obj: Any, name: str, before: Any) -> None:
    """Shadow ``obj.name`` with a function that calls ``before`` first (never raises)."""
    original = getattr(obj, name, None)
    if original is None:
        return

    def hooked(*args: Any, **kwargs: Any) -> Any:
        if _patches.enabled:
            try:
                before(*args, **kwargs)
            except Exception:
                report_internal_error(f"asyncio {name}")
        return original(*args, **kwargs)

    try:
        setattr(obj, name, hooked)
    except (AttributeError, TypeError):  # __slots__ or a compiled class
        return
    watch.shadowed.append((obj, name))


def _watch(
    transport: Any, protocol: Any, host: Any, port: Any, trace_ids: Any, client: str | None
) -> None:
    history = _runtime.open_history(
        NAME, str(host) if host is not None else None, port if isinstance(port, int) else None
    )
    history.socket = socket_facts(
        transport.get_extra_info("socket"),
        transport.get_extra_info("peername"),
        transport.get_extra_info("sockname"),
    )
    if history.server_address is None:
        history.server_address, history.server_port = history.socket.peer()
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        history.set_tls(ssl_object, alpn_offered_by(getattr(ssl_object, "context", None)))
    watch = _Watch(history, trace_ids, client)
    if ssl_object is not None and isinstance(protocol, asyncio.BufferedProtocol):
        watch.reads_visible = False  # SSLProtocol holds buffer_updated already

    def on_eof(*_args: Any, **_kwargs: Any) -> None:
        now = watch.eof_at = _monotonic()
        if not watch.awaiting_answer:
            watch.eof_idle_s = now - watch.last_read

    def on_lost(exc: BaseException | None = None, *_args: Any, **_kwargs: Any) -> None:
        try:
            _connection_lost(watch, exc)
        finally:
            watch.unshadow()
            _live_watches.discard(watch)

    _shadow(watch, protocol, "data_received", _hooked_read)
    _shadow(watch, protocol, "buffer_updated", _hooked_read)
    _wrap_instance_method(watch, protocol, "eof_received", on_eof)
    _wrap_instance_method(watch, protocol, "connection_lost", on_lost)
    _watch_writes(watch, transport)
    _live_watches.add(watch)
    with contextlib.suppress(AttributeError, TypeError):
        protocol._seedance_watch = watch
        watch.shadowed.append((protocol, "_seedance_watch"))


def _watch_writes(watch: _Watch, transport: Any) -> None:
    _shadow(watch, transport, "write", _hooked_write)
    _shadow(watch, transport, "writelines", _hooked_writelines)


# -- the hot path: every write and every read of a watched connection ---------
#
# Specialised closures with asyncio's own parameter names, not the generic
# ``before`` wrapper: no argument packing, one call less (see
# ``benchmarks/asyncio_writes.py``). Nothing in them can raise but
# ``begin_exchange``, which is guarded.


def _hooked_read(watch: _Watch, original: Any) -> Any:
    # For data_received(data) and buffer_updated(nbytes): the loop passes
    # either positionally.
    def data_received(data: Any) -> Any:
        if _patches.enabled:
            watch.prev_read = watch.last_read
            watch.last_read = _monotonic()
        return original(data)

    return data_received


# Per write and read the hooks keep try/except rather than ``with Guard``:
# the context manager's two calls cost ~130 ns a block.


def _note_write(watch: _Watch) -> None:
    now = _monotonic()
    if watch.last_write <= watch.last_read:
        try:
            watch.begin_exchange(now)
        except Exception:
            report_internal_error("asyncio write")
    watch.last_write = now


def _hooked_write(watch: _Watch, original: Any) -> Any:
    def write(data: Any) -> Any:
        if _patches.enabled:
            now = _monotonic()
            if watch.last_write <= watch.last_read:
                try:
                    watch.begin_exchange(now)
                except Exception:
                    report_internal_error("asyncio write")
            watch.last_write = now
        return original(data)

    return write


def _hooked_writelines(watch: _Watch, original: Any) -> Any:
    def writelines(list_of_data: Any) -> Any:
        if _patches.enabled:
            _note_write(watch)
        return original(list_of_data)

    return writelines


def _shadow(watch: _Watch, obj: Any, name: str, make: Any) -> None:
    """Shadow ``obj.name`` on this instance with ``make(watch, original)``."""
    original = getattr(obj, name, None)
    if original is None:
        return
    try:
        setattr(obj, name, make(watch, original))
    except (AttributeError, TypeError):  # __slots__ or a compiled class
        return
    watch.shadowed.append((obj, name))


class _Verdict:
    """What the end of a watched connection means (see the module docstring)."""

    __slots__ = ("idle_s", "in_exchange", "message", "phase")

    def __init__(
        self, phase: Phase, idle_s: float, in_exchange: bool, message: str | None = None
    ) -> None:
        self.phase = phase
        self.idle_s = idle_s
        self.in_exchange = in_exchange
        """The fault hit an exchange: its reuse, idle time and trace apply."""
        self.message = message


_REPLY_WITHIN_S = 0.01
_FIN_AFTER_REPLY_WITHIN_S = 0.1


def _ended_by_peer(watch: _Watch) -> bool:
    """Our write answered the peer's message at once and its FIN followed at once.

    That is the peer ending the conversation (a websocket close handshake:
    its close frame, ours, then its FIN), not a request it failed to answer.
    A server killing a blocked command closes later than this.
    """
    return (
        watch.eof_at is not None
        and watch.exchange_at is not None
        and watch.last_read > watch.history.established_at  # the peer said something
        and watch.exchange_idle_s < _REPLY_WITHIN_S
        and watch.eof_at - watch.exchange_at < _FIN_AFTER_REPLY_WITHIN_S
    )


def _verdict(watch: _Watch, exc: BaseException | None, now: float) -> _Verdict | None:
    """Phase, idle time and message of the connection's end; ``None``: not a fault."""
    awaiting = watch.awaiting_answer
    stale_fin = watch.eof_idle_s
    if awaiting and watch.exchange_at is not None:
        # A request was outstanding. A FIN that came while the connection was
        # quiet, before this exchange's first write, makes it a stale reuse.
        message = None
        if exc is None and stale_fin is not None and watch.eof_at is not None:
            message = (
                f"the peer closed the connection after {stale_fin:.3f} s idle, "
                f"{watch.exchange_at - watch.eof_at:.3f} s before the write that met it"
            )
        if exc is None and watch.eof_at is None:
            return None  # our own close while waiting (a timeout, a cancel)
        if exc is None and _ended_by_peer(watch):
            if watch.peer_quiet_s >= _MIN_IDLE_FOR_IDLE_CLOSE_S:
                return _Verdict(Phase.IDLE, watch.peer_quiet_s, False)
            return None
        return _Verdict(Phase.REQUEST, watch.exchange_idle_s, True, message)
    if exc is not None:
        idle = stale_fin if stale_fin is not None else now - watch.last_read
        return _Verdict(Phase.IDLE, idle, False)
    if stale_fin is not None and stale_fin >= _MIN_IDLE_FOR_IDLE_CLOSE_S:
        return _Verdict(Phase.IDLE, stale_fin, False)
    return None  # our own close, or the protocol's own end right after an answer


def _connection_lost(watch: _Watch, exc: BaseException | None) -> None:
    history = watch.history
    if history.closed:
        return
    now = _monotonic()
    try:
        if not watch.reads_visible:
            _capture_unseen_reads(watch, exc, now)
            return
        verdict = _verdict(watch, exc, now)
        if verdict is None:
            return
        history.idle_since = now - verdict.idle_s
        if verdict.in_exchange:
            reused, served = watch.exchange_reused, watch.exchanges_served
            trace_ids = watch.exchange_trace_ids()
        else:
            served = watch.exchanges_served + (watch.exchange_at is not None)
            reused = served > 0
            trace_ids = watch.trace_ids
        connection = functools.partial(
            _exchange_fields, history, now, reused=reused, requests=served, idle_s=verdict.idle_s
        )
        _capture_end(watch, exc, verdict.phase, connection, trace_ids, verdict.message)
    finally:
        _runtime.connection_closed(history)


def _capture_unseen_reads(watch: _Watch, exc: BaseException | None, now: float) -> None:
    """Reads are invisible: only an error says anything; exchanges stay unknown."""
    if exc is None:
        return  # a FIN we cannot tell from our own close
    phase = Phase.REQUEST if watch.exchange_at is not None else Phase.IDLE
    connection = functools.partial(
        _exchange_fields, watch.history, now, reused=None, requests=None, idle_s=None
    )
    _capture_end(watch, exc, phase, connection, watch.trace_ids, None)


def _exchange_fields(
    history: ConnectionHistory,
    now: float,
    *,
    reused: bool | None,
    requests: int | None,
    idle_s: float | None,
) -> ConnectionFields:
    """The history's fields with what the stream watch knows of its exchanges
    (built only for a full snapshot)."""
    return dataclasses.replace(
        history.fault_fields(now, False), reused=reused, requests=requests, idle_s=idle_s
    )


def _capture_end(
    watch: _Watch,
    exc: BaseException | None,
    phase: Phase,
    connection: Callable[[], ConnectionFields],
    trace_ids: TraceIds,
    message: str | None,
) -> None:
    history = watch.history
    capture(
        FaultContext(
            library=LIBRARY,
            exc=exc,
            facts=HookFacts(
                phase=phase.value,
                alpn_offered=history.alpn_offered,
                alpn_negotiated=history.alpn_negotiated,
                idle_close=exc is None and phase is Phase.IDLE,
            ),
            history=history,
            find_connection=connection,
            in_request=False,
            trace_ids=trace_ids,
            fin_message=message,
            client_library=watch.client,
        )
    )


# -- loop methods ---------------------------------------------------------------


def _create_connection(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not _patches.enabled or _layers.current() is not None:
        return wrapped(*args, **kwargs)
    try:
        client = creating_client()
    except Exception:
        report_internal_error("asyncio create_connection (client)")
        client = None
    return _create_connection_and_watch(wrapped, args, kwargs, client)


def _alpn_of_ssl_argument(ssl_arg: Any) -> tuple[str, ...] | None:
    if isinstance(ssl_arg, ssl.SSLContext):
        return alpn_offered_by(ssl_arg)
    if ssl_arg:  # ssl=True: asyncio makes a default context, which offers nothing
        return ()
    return None


async def _create_connection_and_watch(
    wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any], client: str | None
) -> Any:
    try:
        trace_ids = current_trace_ids()
    except Exception:  # a third-party OpenTracing tracer misbehaving
        report_internal_error("asyncio create_connection (trace)")
        trace_ids = NO_TRACE
    host = args[1] if len(args) > 1 else kwargs.get("host")
    port = args[2] if len(args) > 2 else kwargs.get("port")
    ssl_arg = kwargs.get("ssl")
    try:
        transport, protocol = await wrapped(*args, **kwargs)
    except BaseException as exc:
        with Guard("asyncio create_connection (failure)"):
            _record_connect_failure(exc, host, port, ssl_arg, client)
        raise
    with Guard("asyncio create_connection"):
        _watch(transport, protocol, host, port, trace_ids, client)
    return transport, protocol


def _record_connect_failure(
    exc: BaseException, host: Any, port: Any, ssl_arg: Any, client: str | None
) -> None:
    # A failed lookup was recorded by the getaddrinfo hook already.
    if _runtime.RUNTIME is None or isinstance(exc, (asyncio.CancelledError, socket.gaierror)):
        return
    capture(
        FaultContext(
            library=LIBRARY,
            exc=exc,
            facts=HookFacts(alpn_offered=_alpn_of_ssl_argument(ssl_arg)),
            server_address=str(host) if host is not None else None,
            server_port=port if isinstance(port, int) else None,
            client_library=client,
        )
    )


def _handshake_fields(
    history: ConnectionHistory, offered: tuple[str, ...] | None
) -> ConnectionFields:
    """The history's fields after a failed handshake: no exchange on it can be known."""
    return dataclasses.replace(
        history.fault_fields(_monotonic(), False),
        reused=None,
        alpn_offered=offered or history.alpn_offered,
    )


def _start_tls(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not _patches.enabled or _layers.current() is not None:
        return wrapped(*args, **kwargs)
    return _start_tls_and_watch(wrapped, args, kwargs)


async def _start_tls_and_watch(wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    transport = args[0] if args else kwargs.get("transport")
    protocol = args[1] if len(args) > 1 else kwargs.get("protocol")
    context = args[2] if len(args) > 2 else kwargs.get("sslcontext")
    watch: _Watch | None = getattr(protocol, "_seedance_watch", None)
    try:
        new_transport = await wrapped(*args, **kwargs)
    except BaseException as exc:
        with Guard("asyncio start_tls (failure)"):
            if not isinstance(exc, asyncio.CancelledError) and _runtime.RUNTIME is not None:
                history = watch.history if watch is not None else None
                offered = alpn_offered_by(context)
                peer = transport.get_extra_info("peername") if transport is not None else None
                connection = (
                    functools.partial(_handshake_fields, history, offered)
                    if history is not None
                    else None
                )
                capture(
                    FaultContext(
                        library=LIBRARY,
                        exc=exc,
                        facts=HookFacts(phase=Phase.TLS.value, alpn_offered=offered),
                        history=history,
                        find_connection=connection,
                        in_request=history is None,
                        server_address=kwargs.get("server_hostname")
                        or (peer[0] if isinstance(peer, tuple) else None),
                        server_port=peer[1] if isinstance(peer, tuple) else None,
                        trace_ids=watch.trace_ids if watch is not None else None,
                        client_library=watch.client if watch is not None else None,
                    )
                )
        raise
    with Guard("asyncio start_tls"):
        if watch is not None:
            ssl_object = new_transport.get_extra_info("ssl_object")
            watch.history.set_tls(ssl_object, alpn_offered_by(context))
            _watch_writes(watch, new_transport)
    return new_transport


def _note_uvloop() -> None:
    global _uvloop_noted  # noqa: PLW0603 - said once per process
    if _uvloop_noted or importlib.util.find_spec("uvloop") is None:
        return
    _uvloop_noted = True
    _logger.warning("seedance_otel: %s", UVLOOP_NOTE)
    runtime = _runtime.RUNTIME
    if runtime is not None:
        runtime.notes.append(UVLOOP_NOTE)


def install() -> None:
    if _patches.count:
        return
    base = asyncio.base_events.BaseEventLoop
    # While aiohttp's or httpx's hook connects, these only pass the call on.
    _patches.wrap(base, "create_connection", _create_connection, step_aside=_layers.current)
    _patches.wrap(base, "start_tls", _start_tls, step_aside=_layers.current)
    _patches.enabled = True
    _note_uvloop()


def uninstall() -> None:
    _patches.restore()
    for watch in list(_live_watches):
        watch.unshadow()
    _live_watches.clear()


LIBRARY = Library(
    name=NAME,
    modules=(),
    install=install,
    uninstall=uninstall,
    # Its exceptions (OSError, ssl, IncompleteReadError) are the standard ones
    # the classifier knows already.
    # The protocol's connection_lost runs when the FIN arrives.
    sees_idle_fin=True,
)
