"""Plain asyncio connections: resets on transports that aiohttp and httpx did not make.

Database drivers, Redis clients and websockets talk to sockets through
``loop.create_connection`` / ``asyncio.open_connection`` / ``loop.start_tls``.
When such a connection is made outside aiohttp and httpx (see ``_layers``), we
attach a :class:`ConnectionHistory` and watch the connection's own activity
by wrapping, on that one protocol and transport instance, the methods the
event loop and the application call: ``data_received``/``buffer_updated`` and
``eof_received`` (reads, peer FIN), ``connection_lost`` (the end), and the
transport's ``write``/``writelines``. The trace ids are those of the context
that made the connection: the loop calls ``connection_lost`` from a callback
that belongs to no request.

At ``connection_lost``:

* an error (RST: ``ConnectionResetError``, EPIPE, ...) -> ``connection_reset``,
  phase ``request`` if we wrote after the last read (waiting for an answer),
  else ``idle``;
* a peer FIN while waiting for an answer -> ``connection_reset`` (EOF);
* a peer FIN with nothing outstanding -> ``peer_closed_idle``;
* our own ``close()`` -> nothing.

Handshake failures of ``create_connection(ssl=...)`` and ``start_tls`` are
classified like any other (``alpn_mismatch``, ``tls_error``, ...).

uvloop's loop is compiled and cannot be hooked: connections made on it are
not watched (``instrument()`` says so once); aiohttp and httpx faults are
captured under uvloop as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import socket
import ssl
import time
import weakref
from typing import Any

from .. import _layers, _runtime
from .._capture import FaultContext, capture
from .._classify import HookFacts
from .._connection import ConnectionHistory, socket_facts
from .._guard import report_internal_error
from .._library import Library
from .._snapshot import Phase
from .._trace_context import current_trace_ids
from ._patching import PatchSet
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


class _Watch:
    """One watched connection: its history, its last activity, what we shadowed."""

    __slots__ = (
        "__weakref__",
        "eof_at",
        "history",
        "last_read",
        "last_write",
        "reads_visible",
        "shadowed",
        "trace_ids",
    )

    def __init__(self, history: ConnectionHistory, trace_ids: tuple[str | None, str | None]):
        self.history = history
        self.trace_ids = trace_ids
        now = history.established_at
        self.last_read = now
        self.last_write = now
        self.eof_at: float | None = None
        """When the peer's FIN arrived (``None``: it did not)."""
        self.reads_visible = True
        """False when the event loop cached the read callback before we could
        wrap it (a BufferedProtocol under TLS): then a FIN proves nothing."""
        self.shadowed: list[tuple[Any, str]] = []

    @property
    def awaiting_answer(self) -> bool:
        return self.last_write > self.last_read

    def idle_s(self, now: float) -> float:
        """Idle time before the end: before the FIN if there was one."""
        end = self.eof_at if self.eof_at is not None else now
        return max(0.0, end - max(self.last_read, self.last_write))

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


def _watch(transport: Any, protocol: Any, host: Any, port: Any, trace_ids: Any) -> None:
    history = ConnectionHistory(
        NAME,
        str(host) if host is not None else None,
        port if isinstance(port, int) else None,
        _runtime.peer_for(host, port if isinstance(port, int) else None),
    )
    history.set_socket(
        socket_facts(
            transport.get_extra_info("socket"),
            transport.get_extra_info("peername"),
            transport.get_extra_info("sockname"),
        )
    )
    if history.server_address is None:
        history.server_address, history.server_port = history.peer_address, history.peer_port
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        history.set_tls(ssl_object, alpn_offered_by(getattr(ssl_object, "context", None)))
    watch = _Watch(history, trace_ids)
    if ssl_object is not None and isinstance(protocol, asyncio.BufferedProtocol):
        watch.reads_visible = False  # SSLProtocol holds buffer_updated already
    _runtime.connection_opened(history)

    def on_read(*_args: Any, **_kwargs: Any) -> None:
        watch.last_read = _monotonic()

    def on_write(*_args: Any, **_kwargs: Any) -> None:
        watch.last_write = _monotonic()

    def on_eof(*_args: Any, **_kwargs: Any) -> None:
        watch.eof_at = _monotonic()

    def on_lost(exc: BaseException | None = None, *_args: Any, **_kwargs: Any) -> None:
        try:
            _connection_lost(watch, exc)
        finally:
            watch.unshadow()
            _live_watches.discard(watch)

    for name in ("data_received", "buffer_updated"):
        _wrap_instance_method(watch, protocol, name, on_read)
    _wrap_instance_method(watch, protocol, "eof_received", on_eof)
    _wrap_instance_method(watch, protocol, "connection_lost", on_lost)
    _watch_writes(watch, transport, on_write)
    _live_watches.add(watch)
    with contextlib.suppress(AttributeError, TypeError):
        protocol._seedance_watch = watch
        watch.shadowed.append((protocol, "_seedance_watch"))


def _watch_writes(watch: _Watch, transport: Any, on_write: Any) -> None:
    for name in ("write", "writelines"):
        _wrap_instance_method(watch, transport, name, on_write)


def _connection_lost(watch: _Watch, exc: BaseException | None) -> None:
    history = watch.history
    if history.closed:
        return
    now = _monotonic()
    idle = watch.idle_s(now)
    history.idle_since = now - idle
    try:
        if exc is not None:
            phase = Phase.REQUEST if watch.awaiting_answer else Phase.IDLE
        elif watch.eof_at is None or not watch.reads_visible:
            phase = None  # our own close; or a FIN whose meaning we cannot read
        elif watch.awaiting_answer:
            phase = Phase.REQUEST
        elif idle >= _MIN_IDLE_FOR_IDLE_CLOSE_S:
            phase = Phase.IDLE
        else:
            phase = None
        if phase is not None:
            # A plain stream knows no requests: reuse and count stay unknown.
            connection = dataclasses.replace(
                history.fault_fields(now, False), reused=None, requests=None, idle_s=idle
            )
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
                    connection=connection,
                    in_request=False,
                    trace_ids=watch.trace_ids,
                )
            )
    finally:
        _runtime.connection_closed(history)


# -- loop methods ---------------------------------------------------------------


def _create_connection(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not _patches.enabled or _layers.current() is not None:
        return wrapped(*args, **kwargs)
    return _create_connection_and_watch(wrapped, args, kwargs)


def _alpn_of_ssl_argument(ssl_arg: Any) -> tuple[str, ...] | None:
    if isinstance(ssl_arg, ssl.SSLContext):
        return alpn_offered_by(ssl_arg)
    if ssl_arg:  # ssl=True: asyncio makes a default context, which offers nothing
        return ()
    return None


async def _create_connection_and_watch(
    wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        trace_ids = current_trace_ids()
    except Exception:  # a third-party OpenTracing tracer misbehaving
        report_internal_error("asyncio create_connection (trace)")
        trace_ids = (None, None)
    host = args[1] if len(args) > 1 else kwargs.get("host")
    port = args[2] if len(args) > 2 else kwargs.get("port")
    ssl_arg = kwargs.get("ssl")
    try:
        transport, protocol = await wrapped(*args, **kwargs)
    except BaseException as exc:
        try:
            _record_connect_failure(exc, host, port, ssl_arg)
        except Exception:
            report_internal_error("asyncio create_connection (failure)")
        raise
    try:
        _watch(transport, protocol, host, port, trace_ids)
    except Exception:
        report_internal_error("asyncio create_connection")
    return transport, protocol


def _record_connect_failure(exc: BaseException, host: Any, port: Any, ssl_arg: Any) -> None:
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
        )
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
        try:
            if not isinstance(exc, asyncio.CancelledError) and _runtime.RUNTIME is not None:
                history = watch.history if watch is not None else None
                offered = alpn_offered_by(context)
                peer = transport.get_extra_info("peername") if transport is not None else None
                connection = None
                if history is not None:
                    # The handshake failed: no exchange on it can be known.
                    connection = dataclasses.replace(
                        history.fault_fields(_monotonic(), False),
                        reused=None,
                        alpn_offered=offered or history.alpn_offered,
                    )
                capture(
                    FaultContext(
                        library=LIBRARY,
                        exc=exc,
                        facts=HookFacts(phase=Phase.TLS.value, alpn_offered=offered),
                        history=history,
                        connection=connection,
                        in_request=history is None,
                        server_address=kwargs.get("server_hostname")
                        or (peer[0] if isinstance(peer, tuple) else None),
                        server_port=peer[1] if isinstance(peer, tuple) else None,
                        trace_ids=watch.trace_ids if watch is not None else None,
                    )
                )
        except Exception:
            report_internal_error("asyncio start_tls (failure)")
        raise
    try:
        if watch is not None:
            ssl_object = new_transport.get_extra_info("ssl_object")
            watch.history.set_tls(ssl_object, alpn_offered_by(context))
            _watch_writes(
                watch, new_transport, lambda *a, **k: setattr(watch, "last_write", _monotonic())
            )
    except Exception:
        report_internal_error("asyncio start_tls")
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
    _patches.wrap(base, "create_connection", _create_connection)
    _patches.wrap(base, "start_tls", _start_tls)
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
