"""httpcore connection history and fault capture, async and sync, for any httpcore.

httpx hands every request to httpcore (1.x), httpx2 to httpcore2 (2.x), a
fork that keeps httpcore's layout and the names of every class and method we
hook (``_async/connection.py``, ``http11.py``, ``http2.py``, ``_sync/...``,
``_synchronization.py``, ``_backends/anyio.py``, the ``trace`` extension).
So the hooks are written once, here, for a package *name*:
:class:`HttpcoreHooks` ``("httpcore")`` serves httpx, ``("httpcore2")``
httpx2, and both may be installed and in use at once (each patches its own
classes and records under its own :class:`~seedance_otel._library.Library`).
Each library module (``httpx_client``, ``httpx2_client``) is only its
``Library`` and this wiring.

The two per-request hooks are plain functions used for both the async and the
sync class: they do their work *before* calling the original and return its
result untouched (a coroutine for the async class), so one body serves both
and no extra coroutine frame is paid per request.

Why these hooks (httpcore 1.0, httpcore2 2.16):

* ``HTTPConnection._connect`` (per new connection) makes the TCP and TLS
  connection. To an https origin we pass our own ``trace`` extension for its
  duration (httpcore's public hook) to learn the phase (``connect_tcp`` /
  ``start_tls``), the TCP stream before TLS (its peer address, for a failed
  handshake) and the SSL context (what ALPN it offers); to a plain-http
  origin there is no handshake and the stream answers afterwards. Addresses
  are read here, once: httpcore reads them lazily and fails after a RST.
* ``HTTP11Connection.handle_request`` (and HTTP/2) marks a request starting:
  reused or not, idle for how long.
* ``HTTP11Connection._response_closed`` runs once per request on every path.
  On failure httpcore calls it inside the ``except`` block that handles the
  error, whether it came from sending, from the response headers or from the
  body stream, so the exception is ``sys.exc_info()`` there - taken only if
  httpcore's own request or body frame is handling it, or it was raised
  through this connection's frames (an application may make a request inside
  its own ``except`` block).
* ``HTTP11Connection.aclose``/``close`` with the socket readable while idle
  is the peer having closed a pooled connection.
* ``AsyncEvent.wait``/``Event.wait`` only run when the pool is exhausted; a
  ``PoolTimeout`` raised there is recorded as ``pool_timeout``.
* A new connection opened in the span of a request that just met a reset on
  a reused connection is that request sent again (the SDKs retry by
  themselves): counted per peer (``retried_after_reset_count``), since the
  caller never sees the error.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
import time
from collections.abc import Callable
from contextvars import Token
from types import CodeType, FrameType, ModuleType, TracebackType
from typing import Any

from .. import _dns, _layers, _runtime
from .._capture import FaultContext, capture
from .._classify import HookFacts
from .._connection import ConnectionHistory, PeerStats, SocketFacts, socket_facts
from .._frames import raised_through
from .._guard import Guard, report_internal_error
from .._library import Library
from .._snapshot import Phase
from .._trace_context import current_trace_ids
from ._patching import PatchSet, signature_is
from .ssl_alpn import alpn_offered_by

__all__ = ["HttpcoreHooks", "request_fields"]

_HISTORY = "_seedance_history"
"""Our one attribute on httpcore's stream and connection classes (a class
default of ``None``; see ``_patching``). httpcore and httpcore2 classes are
distinct, so both carry it without meeting."""
_monotonic = time.monotonic
_REQUEST, _RESPONSE, _CONNECT = Phase.REQUEST.value, Phase.RESPONSE.value, Phase.CONNECT.value
"""Read once: an enum member's ``value`` is a Python-level property (per fault,
or per connection)."""

_FAILED_SPANS_KEPT = 256
"""Spans whose request met a reset on a reused connection, kept to see whether
the same span sends again on a new connection (a retry). Bounded: oldest out."""


# -- per new connection: _connect ---------------------------------------------


class _ConnectObserver:
    """Our ``trace`` extension while httpcore connects; chains to the user's."""

    __slots__ = ("phase", "ssl_context", "tcp_facts", "user_trace")

    def __init__(self, user_trace: Any) -> None:
        self.user_trace = user_trace
        self.phase: str = _CONNECT
        self.tcp_facts: SocketFacts | None = None
        """Addresses of the TCP connection, read as soon as it exists: a failed
        TLS handshake closes it before we could ask."""
        self.ssl_context: Any = None

    def observe(self, name: str, info: dict[str, Any]) -> None:
        with _GUARD_TRACE:
            if name == "connection.connect_tcp.complete":
                stream = info.get("return_value")
                if stream is not None:
                    self.tcp_facts = _stream_socket_facts(stream)
            elif name == "connection.start_tls.started":
                self.phase = Phase.TLS.value
                self.ssl_context = info.get("ssl_context")

    def sync_trace(self, name: str, info: dict[str, Any]) -> None:
        self.observe(name, info)
        if self.user_trace is not None:
            self.user_trace(name, info)

    async def async_trace(self, name: str, info: dict[str, Any]) -> None:
        self.observe(name, info)
        if self.user_trace is not None:
            await self.user_trace(name, info)


def _request_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("request")


def _install_observer(request: Any, is_async: bool) -> _ConnectObserver | None:
    try:
        extensions = request.extensions
        observer = _ConnectObserver(extensions.get("trace"))
        extensions["trace"] = observer.async_trace if is_async else observer.sync_trace
        return observer
    except Exception:
        report_internal_error("httpcore connect (trace install)")
        return None


def _remove_observer(request: Any, observer: _ConnectObserver | None) -> None:
    if observer is None:
        return
    with Guard("httpcore connect (trace remove)"):
        if observer.user_trace is None:
            request.extensions.pop("trace", None)
        else:
            request.extensions["trace"] = observer.user_trace


def _origin(connection: Any) -> tuple[str | None, int | None]:
    origin = getattr(connection, "_origin", None)
    if origin is None:
        return None, None
    host = origin.host.decode("ascii", "replace") if isinstance(origin.host, bytes) else None
    return host, origin.port


def _stream_socket_facts(stream: Any) -> SocketFacts:
    """Addresses and cookie, read from the socket itself.

    One ``get_extra_info`` only: on anyio streams each call builds the
    stream's whole attribute table (the costliest step of a new connection
    here); the socket answers ``getpeername``/``getsockname`` directly.
    """
    sock = _raw_socket(stream)
    if sock is None:
        try:
            sock = stream.get_extra_info("socket")
        except Exception:  # lazily read; may fail once the peer is gone
            sock = None
    return socket_facts(sock)


def _raw_socket(stream: Any) -> Any:
    """anyio's socket, without building its attribute table: ``_raw_socket`` of
    the anyio stream (under TLS, of its transport stream). ``None`` where that
    private layout differs (then ``get_extra_info`` answers)."""
    inner = getattr(stream, "_stream", None)
    inner = getattr(inner, "transport_stream", inner)
    try:
        return getattr(inner, "_raw_socket", None)
    except Exception:  # a property over a transport already gone
        return None


# -- per request ----------------------------------------------------------------


def _attach_history(connection: Any) -> ConnectionHistory | None:
    """First request on an HTTP connection: adopt the history made at connect."""
    history: ConnectionHistory | None = getattr(connection._network_stream, _HISTORY, None)
    if history is not None:
        connection._seedance_history = history
    return history


def _begin(connection: Any, request: Any, multiplexed: bool) -> None:
    history = connection._seedance_history
    if history is None:
        history = _attach_history(connection)
    if history is not None:
        history.begin_request(_monotonic(), request, multiplexed)


def _belongs(value: Any, connection: Any) -> bool:
    """``value`` is this HTTP connection, or its response byte stream."""
    return value is connection or getattr(value, "_connection", None) is connection


def _failed_on(connection: Any, exc: BaseException) -> bool:
    """``exc``, being handled while ``connection`` closes its response, is
    that request's failure (not an application exception being handled
    around the close).

    Asked when httpcore's own request or body frame is not the one handling
    it (that frame closes only its own connection's response, so its code
    says enough, and ``HttpcoreHooks._end`` checks it first): the frames it
    was raised through are searched, which reads their locals (a few
    microseconds a frame).
    """
    return raised_through(exc, lambda v: _belongs(v, connection))


def _raised_in_body(tb: TracebackType | None) -> bool:
    while tb is not None:
        if tb.tb_frame.f_code.co_name in ("_receive_response_body", "__aiter__", "__iter__"):
            return True
        tb = tb.tb_next
    return False


def _pool_request_in(frame: FrameType | None) -> Any:
    """The ``PoolRequest`` waiting in a caller frame (fault path only)."""
    depth = 0
    while frame is not None and depth < 6:
        candidate = frame.f_locals.get("self")
        if candidate is not None and type(candidate).__name__.endswith("PoolRequest"):
            return getattr(candidate, "request", None)
        frame = frame.f_back
        depth += 1
    return None


def request_fields(request: object) -> tuple[str | None, str | None]:
    """(method, URL) of an httpcore ``Request``, whose parts are bytes."""
    method = getattr(request, "method", None)
    if isinstance(method, bytes):
        method = method.decode("ascii", "replace")
    url = getattr(request, "url", None)
    if url is None:
        return method, None
    scheme = getattr(url, "scheme", None)
    if not isinstance(scheme, bytes):
        return method, str(url)
    port = f":{url.port}" if url.port is not None else ""
    text = (
        f"{scheme.decode('ascii', 'replace')}://"
        f"{url.host.decode('ascii', 'replace')}{port}{url.target.decode('ascii', 'replace')}"
    )
    return method, text


def _closing_itself(connection: Any) -> bool:
    """httpcore is closing the connection by its own decision, not finding it closed.

    A pooled HTTP/1.1 connection has started its next h11 cycle (the peer's
    state ``IDLE``). After a response that said ``Connection: close``,
    httpcore closes the connection straight from ``_response_closed`` with
    the peer's state ``MUST_CLOSE``: the socket is readable (the peer's FIN
    follows its last response) but nothing failed.
    """
    state = getattr(getattr(connection, "_h11_state", None), "their_state", None)
    return state is not None and getattr(state, "__name__", "IDLE") != "IDLE"


def _request_handler_codes(
    starts: list[tuple[ModuleType, type, str]],
) -> frozenset[CodeType]:
    """The code of httpcore's functions that close a response while handling
    its failure: each connection class's request method and its response byte
    stream's iterator (both call ``_response_closed`` from their ``except``).
    Read before our patches replace the request methods; a name httpcore no
    longer has is left out (the frame search then decides)."""
    codes: set[CodeType] = set()
    for module, cls, start in starts:
        # AsyncHTTP11Connection's response stream is HTTP11ConnectionByteStream.
        stream = getattr(module, cls.__name__.removeprefix("Async") + "ByteStream", None)
        for function in (
            getattr(cls, start, None),
            getattr(stream, "__aiter__", None),
            getattr(stream, "__iter__", None),
        ):
            code = getattr(function, "__code__", None)
            if isinstance(code, CodeType):
                codes.add(code)
    return frozenset(codes)


# Per connect trace event: one guard, made once. (Per request the hooks keep
# try/except: a with block costs ~130 ns, try nothing until something fails.)
_GUARD_TRACE = Guard("httpcore connect trace")


class _ConnectAttempt:
    """One ``_connect`` in flight, the same for the async and the sync client:
    its trace observer installed (to an https origin), the connect marked as
    ours (the asyncio hooks stay out), and what to do when it ends."""

    __slots__ = ("connection", "hooks", "observer", "request", "started_at", "token")

    def __init__(
        self,
        hooks: HttpcoreHooks,
        connection: Any,
        request: Any,
        observer: _ConnectObserver | None,
        token: Token[Library | None],
    ) -> None:
        self.hooks = hooks
        self.connection = connection
        self.request = request
        self.observer = observer
        self.token = token
        self.started_at = _monotonic()

    def failed(self, exc: BaseException) -> None:
        _remove_observer(self.request, self.observer)
        self.hooks._after_connect_failed(self, exc)

    def succeeded(self, stream: Any) -> Any:
        if self.observer is not None:
            _remove_observer(self.request, self.observer)
        self.hooks._after_connect(self.connection, stream, self.observer)
        return stream


class HttpcoreHooks:
    """The hooks on one httpcore package (``httpcore`` or ``httpcore2``).

    Made once per library module; :meth:`library` builds that module's
    :class:`Library` around :meth:`install` / :meth:`uninstall`, and every
    fault these hooks record names that library.
    """

    def __init__(self, package: str) -> None:
        self.package = package
        self.patches = PatchSet(package)
        self._failed_spans: dict[tuple[str, str], PeerStats] = {}
        self._failed_lock = threading.Lock()
        self._connect_where = f"{package} connect"
        self._guard_connect_failed = Guard(f"{package} connect (failure)")
        self._guard_pool_timeout = Guard(f"{package} pool timeout")
        self._handler_codes: frozenset[CodeType] = frozenset()

    def library(self, **fields: Any) -> Library:
        """This package's :class:`Library`: ``fields`` plus the hooks' own parts."""
        self.owner = Library(
            modules=(self.package,),
            install=self.install,
            uninstall=self.uninstall,
            request_fields=request_fields,
            **fields,
        )
        return self.owner

    owner: Library
    """The :class:`Library` these hooks record faults for, set by :meth:`library`
    (which runs at import, before any hook). A plain attribute, not a property:
    read up to three times per new connection, and a property is a call."""

    # -- per new connection ---------------------------------------------------

    async def _connect_async(
        self, wrapped: Any, connection: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        attempt = self._attempt(connection, args, kwargs, is_async=True)
        try:
            stream = await wrapped(*args, **kwargs)
        except BaseException as exc:
            attempt.failed(exc)
            raise
        finally:
            _layers.leave(attempt.token)
        return attempt.succeeded(stream)

    def _connect_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not self.patches.enabled:
            return wrapped(*args, **kwargs)
        attempt = self._attempt(instance, args, kwargs, is_async=False)
        try:
            stream = wrapped(*args, **kwargs)
        except BaseException as exc:
            attempt.failed(exc)
            raise
        finally:
            _layers.leave(attempt.token)
        return attempt.succeeded(stream)

    def _attempt(
        self, connection: Any, args: tuple[Any, ...], kwargs: dict[str, Any], is_async: bool
    ) -> _ConnectAttempt:
        request = _request_arg(args, kwargs)
        # To a plain-http origin nothing happens between the TCP connect and
        # _connect's return (no handshake to fail, no TLS phase): the stream
        # answers afterwards, and httpcore is spared tracing the connect.
        plain = getattr(getattr(connection, "_origin", None), "scheme", None) == b"http"
        observer = None if plain else _install_observer(request, is_async=is_async)
        return _ConnectAttempt(self, connection, request, observer, _layers.enter(self.owner))

    def _after_connect(
        self, connection: Any, stream: Any, observer: _ConnectObserver | None
    ) -> None:
        # try/except, not ``with Guard``: two calls fewer per new connection.
        try:
            host, port = _origin(connection)
            history = _runtime.open_history(self.owner.name, host, port)
            # The TCP facts read as the connect completed are this socket's.
            tcp = observer.tcp_facts if observer is not None else None
            history.socket = tcp if tcp is not None else _stream_socket_facts(stream)
            # No TLS seen starting, to a plain-http origin: no SSL object to ask for.
            origin = getattr(connection, "_origin", None)
            tls = (observer is not None and observer.ssl_context is not None) or getattr(
                origin, "scheme", b"https"
            ) != b"http"
            ssl_object = stream.get_extra_info("ssl_object") if tls else None
            if ssl_object is not None:
                context = observer.ssl_context if observer is not None else None
                if context is None:
                    context = getattr(ssl_object, "context", None)
                history.set_tls(ssl_object, alpn_offered_by(context))
            setattr(stream, _HISTORY, history)
            if self._failed_spans:
                self._note_retry(history.peer)
        except Exception:
            report_internal_error(self._connect_where)

    # -- a request sent again after a reset (the SDKs retry by themselves) --------

    def _remember_failed_span(
        self, trace_ids: tuple[str | None, str | None], peer: PeerStats
    ) -> None:
        trace_id, span_id = trace_ids
        if trace_id is None or span_id is None:
            return
        with self._failed_lock:
            spans = self._failed_spans
            spans.pop((trace_id, span_id), None)
            if len(spans) >= _FAILED_SPANS_KEPT:
                del spans[next(iter(spans))]
            spans[(trace_id, span_id)] = peer

    def _note_retry(self, peer: PeerStats) -> None:
        """A new connection opens in a span whose request just met a stale reset.

        That is the request being sent again (by the SDK's retry loop, say): the
        reset cost the caller a delay, not an error. Runs once per new
        connection, and only while a failed span is remembered.
        """
        trace_id, span_id, _sampled = current_trace_ids()
        if trace_id is None or span_id is None:
            return
        with self._failed_lock:
            failed_peer = self._failed_spans.pop((trace_id, span_id), None)
        if failed_peer is peer:
            peer.retried_after_reset_count += 1

    def _after_connect_failed(self, attempt: _ConnectAttempt, exc: BaseException) -> None:
        with self._guard_connect_failed:
            if _runtime.RUNTIME is None:
                return
            host, port = _origin(attempt.connection)
            observer = attempt.observer
            phase = observer.phase if observer is not None else _CONNECT
            dns, in_lookup = _dns.lookup_at_fault(attempt.started_at)
            if in_lookup:
                phase = Phase.DNS.value
            offered = tried = None
            if observer is not None:
                offered = alpn_offered_by(observer.ssl_context)
                if observer.tcp_facts is not None:
                    tried = functools.partial(observer.tcp_facts.connection_fields, offered)
            capture(
                FaultContext(
                    library=self.owner,
                    exc=exc,
                    facts=HookFacts(phase=phase, alpn_offered=offered),
                    find_connection=tried,
                    request=attempt.request,
                    server_address=host,
                    server_port=port,
                    dns=dns,
                )
            )

    # -- per request ------------------------------------------------------------
    #
    # Both wrappers serve the async and the sync class alike: the work is done
    # before the call and the original's result (a coroutine for the async
    # class) is returned untouched. Each has an exact-signature form (cheaper)
    # and a generic one for a library whose signature changed (see
    # ``signature_is``). They close over what they call, so a request pays no
    # attribute lookup on this object.

    def _make_request_started(self, multiplexed: bool) -> Callable[[Any], Any]:
        patches = self.patches

        def factory(original: Any) -> Any:
            if signature_is(original, ("self", "request")):

                def request_started(self: Any, request: Any) -> Any:
                    if patches.enabled:
                        try:
                            _begin(self, request, multiplexed)
                        except Exception:
                            report_internal_error("httpcore request start")
                    return original(self, request)

                return request_started

            def generic_request_started(self: Any, *args: Any, **kwargs: Any) -> Any:
                if patches.enabled:
                    try:
                        _begin(self, args[0] if args else kwargs.get("request"), multiplexed)
                    except Exception:
                        report_internal_error("httpcore request start")
                return original(self, *args, **kwargs)

            return generic_request_started

        return factory

    def _first(self, call: Callable[[Any], None], what: str) -> Callable[[Any], Any]:
        """A ``replace`` factory: a plain method that runs ``call(connection)``,
        guarded, then the original (for ``_response_closed`` and ``aclose``/
        ``close``, which take only ``self``)."""
        patches = self.patches
        label = f"{self.package} {what}"

        def factory(original: Any) -> Any:
            if signature_is(original, ("self",)):

                def hooked(self: Any) -> Any:
                    if patches.enabled:
                        try:
                            call(self)
                        except Exception:
                            report_internal_error(label)
                    return original(self)

                return hooked

            def generic_hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
                if patches.enabled:
                    try:
                        call(self)
                    except Exception:
                        report_internal_error(label)
                return original(self, *args, **kwargs)

            return generic_hooked

        return factory

    def _end(self, connection: Any) -> None:
        history = connection._seedance_history
        if history is not None and history.active:
            exc = sys.exc_info()[1]
            if exc is not None:
                # Usually httpcore's own request or body frame is handling
                # ``exc``: its code says enough (checked here, not called: this
                # runs for every faulting request).
                tb = exc.__traceback__
                if (tb is not None and tb.tb_frame.f_code in self._handler_codes) or _failed_on(
                    connection, exc
                ):
                    self._on_request_failed(history, exc)
                    history.end_request_failed()
                    return
            history.end_request_ok(_monotonic())

    def _on_request_failed(self, history: ConnectionHistory, exc: BaseException) -> None:
        if _runtime.RUNTIME is None:
            return
        phase = _RESPONSE if _raised_in_body(exc.__traceback__) else _REQUEST
        snapshot = capture(
            FaultContext(
                library=self.owner,
                exc=exc,
                facts=HookFacts(
                    phase=phase,
                    alpn_offered=history.alpn_offered,
                    alpn_negotiated=history.alpn_negotiated,
                ),
                history=history,
            )
        )
        if snapshot is not None and history.reused_for_request:
            self._remember_failed_span((snapshot.trace_id, snapshot.span_id), history.peer)

    # -- per closed connection: did the peer close it while idle? ---------------

    def _connection_closing(self, connection: Any) -> None:
        history = connection._seedance_history
        if history is None:
            return
        if (
            not history.broken  # first: a failed connection is not idle (no call)
            and history.idle_in_pool
            and _runtime.RUNTIME is not None
            and not _closing_itself(connection)
        ):
            stream = getattr(connection, "_network_stream", None)
            # A readable socket on an idle HTTP/1.1 connection can only
            # mean EOF (or RST) from the peer: httpcore's own test.
            if stream is not None and stream.get_extra_info("is_readable"):
                capture(
                    FaultContext(
                        library=self.owner,
                        exc=None,
                        facts=HookFacts(phase=Phase.IDLE.value, idle_close=True),
                        history=history,
                        in_request=False,
                    )
                )
        _runtime.connection_closed(history)

    # -- pool exhaustion ----------------------------------------------------------

    def _record_pool_timeout(self, exc: BaseException, frame: FrameType | None) -> None:
        with self._guard_pool_timeout:
            if _runtime.RUNTIME is None or type(exc).__name__ != "PoolTimeout":
                return
            request = _pool_request_in(frame)
            host = port = None
            if request is not None:
                url = request.url
                host = url.host.decode("ascii", "replace") if isinstance(url.host, bytes) else None
                port = url.port
            capture(
                FaultContext(
                    library=self.owner,
                    exc=exc,
                    facts=HookFacts(phase=Phase.POOL.value),
                    request=request,
                    server_address=host,
                    server_port=port,
                )
            )

    async def _event_wait_async(
        self, wrapped: Any, event: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            return await wrapped(*args, **kwargs)
        except BaseException as exc:
            self._record_pool_timeout(exc, sys._getframe(1))
            raise

    def _event_wait_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not self.patches.enabled:
            return wrapped(*args, **kwargs)
        try:
            return wrapped(*args, **kwargs)
        except BaseException as exc:
            self._record_pool_timeout(exc, sys._getframe(1))
            raise

    # -- install ------------------------------------------------------------------

    def _module(self, name: str) -> Any:
        return importlib.import_module(f"{self.package}.{name}")

    def install(self) -> None:
        """Wrap the package (called when it is imported, or at once if it already is)."""
        patches = self.patches
        if patches.count:
            return
        async_connection = self._module("_async.connection")
        async_http11 = self._module("_async.http11")
        sync_connection = self._module("_sync.connection")
        sync_http11 = self._module("_sync.http11")
        synchronization = self._module("_synchronization")

        patches.add_default(self._module("_backends.anyio").AnyIOStream, _HISTORY, None)
        patches.add_default(self._module("_backends.sync").SyncStream, _HISTORY, None)
        patches.wrap(
            async_connection.AsyncHTTPConnection,
            "_connect",
            self._connect_async,
            while_enabled=True,
        )
        patches.wrap(sync_connection.HTTPConnection, "_connect", self._connect_sync)
        connection_classes: list[tuple[ModuleType, type, str, str | None, bool]] = [
            (
                async_http11,
                async_http11.AsyncHTTP11Connection,
                "handle_async_request",
                "aclose",
                False,
            ),
            (sync_http11, sync_http11.HTTP11Connection, "handle_request", "close", False),
        ]
        try:
            async_http2 = self._module("_async.http2")
            sync_http2 = self._module("_sync.http2")
        except ImportError:  # the optional h2 package is not installed
            pass
        else:
            connection_classes += [
                (
                    async_http2,
                    async_http2.AsyncHTTP2Connection,
                    "handle_async_request",
                    None,
                    True,
                ),
                (sync_http2, sync_http2.HTTP2Connection, "handle_request", None, True),
            ]
        self._handler_codes = _request_handler_codes(
            [(module, cls, start) for module, cls, start, _close, _plex in connection_classes]
        )
        for _module, cls, start, close, multiplexed in connection_classes:
            patches.add_default(cls, _HISTORY, None)
            # Per request: plain functions (see _patching for the measured reason).
            patches.replace(cls, start, self._make_request_started(multiplexed))
            patches.replace(cls, "_response_closed", self._first(self._end, "response closed"))
            if close is not None:
                # Per connection; a plain function too (no wrapper to bind).
                patches.replace(
                    cls, close, self._first(self._connection_closing, "connection close")
                )
        patches.wrap(
            synchronization.AsyncEvent, "wait", self._event_wait_async, while_enabled=True
        )
        patches.wrap(synchronization.Event, "wait", self._event_wait_sync)
        patches.enabled = True

    def uninstall(self) -> None:
        self.patches.restore()
        with self._failed_lock:
            self._failed_spans.clear()
