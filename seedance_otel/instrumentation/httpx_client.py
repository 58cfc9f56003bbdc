"""httpx (through httpcore 1.x): connection history and fault capture, async and sync.

httpx hands every request to httpcore, so the hooks sit on httpcore classes.
The two per-request hooks are plain functions used for both the async and the
sync class: they do their work *before* calling the original and return its
result untouched (a coroutine for the async class), so one body serves both
and no extra coroutine frame is paid per request.

Why these hooks (httpcore 1.0):

* ``HTTPConnection._connect`` (per new connection) makes the TCP and TLS
  connection. We pass our own ``trace`` extension for its duration (httpcore's
  public hook) to learn the phase (``connect_tcp`` / ``start_tls``), the TCP
  stream before TLS (its peer address, for a failed handshake) and the SSL
  context (what ALPN it offers). Addresses are read here, once: httpcore reads
  them lazily and fails after a RST.
* ``HTTP11Connection.handle_request`` (and HTTP/2) marks a request starting:
  reused or not, idle for how long.
* ``HTTP11Connection._response_closed`` runs once per request on every path.
  On failure httpcore calls it inside the ``except`` block that handles the
  error, whether it came from sending, from the response headers or from the
  body stream, so the exception is ``sys.exc_info()`` there - taken only if
  it was raised through this connection's frames (an application may make a
  request inside its own ``except`` block).
* ``HTTP11Connection.aclose``/``close`` with the socket readable while idle
  is the peer having closed a pooled connection.
* ``AsyncEvent.wait``/``Event.wait`` only run when the pool is exhausted; a
  ``PoolTimeout`` raised there is recorded as ``pool_timeout``.
"""

from __future__ import annotations

import sys
import time
from types import FrameType, TracebackType
from typing import Any

from .. import _dns, _layers, _runtime
from .._capture import FaultContext, capture
from .._classify import HookFacts
from .._connection import ConnectionHistory, SocketFacts, socket_facts
from .._frames import raised_through
from .._guard import report_internal_error
from .._library import ContribInstrumentor, ExceptionNames, Library, LibraryAdvice
from .._snapshot import Phase
from ._patching import PatchSet, signature_is
from .ssl_alpn import alpn_offered_by

__all__ = ["install", "uninstall"]

NAME = "httpx"
_HISTORY = "_seedance_history"
_patches = PatchSet(NAME)
_monotonic = time.monotonic


# -- per new connection: _connect ---------------------------------------------


class _ConnectObserver:
    """Our ``trace`` extension while httpcore connects; chains to the user's."""

    __slots__ = ("phase", "ssl_context", "started_at", "tcp_facts", "user_trace")

    def __init__(self, user_trace: Any) -> None:
        self.user_trace = user_trace
        self.phase: str = Phase.CONNECT.value
        self.tcp_facts: SocketFacts | None = None
        """Addresses of the TCP connection, read as soon as it exists: a failed
        TLS handshake closes it before we could ask."""
        self.ssl_context: Any = None
        self.started_at = _monotonic()

    def observe(self, name: str, info: dict[str, Any]) -> None:
        try:
            if name == "connection.connect_tcp.complete":
                stream = info.get("return_value")
                if stream is not None:
                    self.tcp_facts = _stream_socket_facts(stream)
            elif name == "connection.start_tls.started":
                self.phase = Phase.TLS.value
                self.ssl_context = info.get("ssl_context")
        except Exception:
            report_internal_error("httpx connect trace")

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
        report_internal_error("httpx connect (trace install)")
        return None


def _remove_observer(request: Any, observer: _ConnectObserver | None) -> None:
    if observer is None:
        return
    try:
        if observer.user_trace is None:
            request.extensions.pop("trace", None)
        else:
            request.extensions["trace"] = observer.user_trace
    except Exception:
        report_internal_error("httpx connect (trace remove)")


async def _connect_async(
    wrapped: Any, connection: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    request = _request_arg(args, kwargs)
    observer = _install_observer(request, is_async=True)
    token = _layers.enter(LIBRARY)
    try:
        stream = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _remove_observer(request, observer)
        _after_connect_failed(connection, request, observer, exc)
        raise
    finally:
        _layers.leave(token)
    _remove_observer(request, observer)
    _after_connect(connection, stream, observer)
    return stream


def _connect_sync(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not _patches.enabled:
        return wrapped(*args, **kwargs)
    request = _request_arg(args, kwargs)
    observer = _install_observer(request, is_async=False)
    token = _layers.enter(LIBRARY)
    try:
        stream = wrapped(*args, **kwargs)
    except BaseException as exc:
        _remove_observer(request, observer)
        _after_connect_failed(instance, request, observer, exc)
        raise
    finally:
        _layers.leave(token)
    _remove_observer(request, observer)
    _after_connect(instance, stream, observer)
    return stream


def _origin(connection: Any) -> tuple[str | None, int | None]:
    origin = getattr(connection, "_origin", None)
    if origin is None:
        return None, None
    host = origin.host.decode("ascii", "replace") if isinstance(origin.host, bytes) else None
    return host, origin.port


def _stream_socket_facts(stream: Any) -> SocketFacts:
    def info(name: str) -> Any:
        try:
            return stream.get_extra_info(name)
        except Exception:  # lazily read; may fail once the peer is gone
            return None

    return socket_facts(info("socket"), info("server_addr"), info("client_addr"))


def _after_connect(connection: Any, stream: Any, observer: _ConnectObserver | None) -> None:
    try:
        host, port = _origin(connection)
        history = ConnectionHistory(NAME, host, port, _runtime.peer_for(host, port))
        history.set_socket(_stream_socket_facts(stream))
        ssl_object = stream.get_extra_info("ssl_object")
        if ssl_object is not None:
            context = observer.ssl_context if observer is not None else None
            if context is None:
                context = getattr(ssl_object, "context", None)
            history.set_tls(ssl_object, alpn_offered_by(context))
        setattr(stream, _HISTORY, history)
        _runtime.connection_opened(history)
    except Exception:
        report_internal_error("httpx connect")


def _after_connect_failed(
    connection: Any, request: Any, observer: _ConnectObserver | None, exc: BaseException
) -> None:
    try:
        if _runtime.RUNTIME is None:
            return
        host, port = _origin(connection)
        phase = observer.phase if observer is not None else None
        dns = offered = connection = None
        if observer is not None:
            dns, in_lookup = _dns.lookup_at_fault(observer.started_at)
            if in_lookup:
                phase = Phase.DNS.value
            offered = alpn_offered_by(observer.ssl_context)
            if observer.tcp_facts is not None:
                connection = observer.tcp_facts.connection_fields(offered)
        capture(
            FaultContext(
                library=LIBRARY,
                exc=exc,
                facts=HookFacts(phase=phase, alpn_offered=offered),
                connection=connection,
                request=request,
                server_address=host,
                server_port=port,
                dns=dns,
            )
        )
    except Exception:
        report_internal_error("httpx connect (failure)")


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


def _end(connection: Any) -> None:
    history = connection._seedance_history
    if history is not None and history.active:
        exc = sys.exc_info()[1]
        if exc is not None and raised_through(exc, lambda v: _belongs(v, connection)):
            _on_request_failed(history, exc)
            history.end_request_failed()
        else:
            history.end_request_ok(_monotonic())


def _belongs(value: Any, connection: Any) -> bool:
    """``value`` is this HTTP connection, or its response byte stream."""
    return value is connection or getattr(value, "_connection", None) is connection


# Both wrappers serve the async and the sync class alike: the work is done
# before the call and the original's result (a coroutine for the async class)
# is returned untouched. Each has an exact-signature form (cheaper) and a
# generic one for a library whose signature changed (see ``signature_is``).


def _make_request_started(multiplexed: bool) -> Any:
    def factory(original: Any) -> Any:
        if signature_is(original, ("self", "request")):

            def request_started(self: Any, request: Any) -> Any:
                if _patches.enabled:
                    try:
                        _begin(self, request, multiplexed)
                    except Exception:
                        report_internal_error("httpx request start")
                return original(self, request)

            return request_started

        def generic_request_started(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _patches.enabled:
                try:
                    _begin(self, args[0] if args else kwargs.get("request"), multiplexed)
                except Exception:
                    report_internal_error("httpx request start")
            return original(self, *args, **kwargs)

        return generic_request_started

    return factory


def _make_response_closed(original: Any) -> Any:
    if signature_is(original, ("self",)):

        def response_closed(self: Any) -> Any:
            if _patches.enabled:
                try:
                    _end(self)
                except Exception:
                    report_internal_error("httpx response closed")
            return original(self)

        return response_closed

    def generic_response_closed(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _patches.enabled:
            try:
                _end(self)
            except Exception:
                report_internal_error("httpx response closed")
        return original(self, *args, **kwargs)

    return generic_response_closed


def _raised_in_body(tb: TracebackType | None) -> bool:
    while tb is not None:
        if tb.tb_frame.f_code.co_name in ("_receive_response_body", "__aiter__", "__iter__"):
            return True
        tb = tb.tb_next
    return False


def _on_request_failed(history: ConnectionHistory, exc: BaseException) -> None:
    if _runtime.RUNTIME is None:
        return
    phase = Phase.RESPONSE.value if _raised_in_body(exc.__traceback__) else Phase.REQUEST.value
    capture(
        FaultContext(
            library=LIBRARY,
            exc=exc,
            facts=HookFacts(
                phase=phase,
                alpn_offered=history.alpn_offered,
                alpn_negotiated=history.alpn_negotiated,
            ),
            history=history,
        )
    )


# -- per closed connection: did the peer close it while idle? -------------------


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


def _connection_closing(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _patches.enabled:
        try:
            history = getattr(instance, _HISTORY, None)
            if history is not None:
                if (
                    history.idle_in_pool
                    and _runtime.RUNTIME is not None
                    and not _closing_itself(instance)
                ):
                    stream = getattr(instance, "_network_stream", None)
                    # A readable socket on an idle HTTP/1.1 connection can only
                    # mean EOF (or RST) from the peer: httpcore's own test.
                    if stream is not None and stream.get_extra_info("is_readable"):
                        capture(
                            FaultContext(
                                library=LIBRARY,
                                exc=None,
                                facts=HookFacts(phase=Phase.IDLE.value, idle_close=True),
                                history=history,
                                in_request=False,
                            )
                        )
                _runtime.connection_closed(history)
        except Exception:
            report_internal_error("httpx connection close")
    return wrapped(*args, **kwargs)


# -- pool exhaustion --------------------------------------------------------------


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


def _record_pool_timeout(exc: BaseException, frame: FrameType | None) -> None:
    try:
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
                library=LIBRARY,
                exc=exc,
                facts=HookFacts(phase=Phase.POOL.value),
                request=request,
                server_address=host,
                server_port=port,
            )
        )
    except Exception:
        report_internal_error("httpx pool timeout")


async def _event_wait_async(
    wrapped: Any, event: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    except BaseException as exc:
        _record_pool_timeout(exc, sys._getframe(1))
        raise


def _event_wait_sync(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not _patches.enabled:
        return wrapped(*args, **kwargs)
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        _record_pool_timeout(exc, sys._getframe(1))
        raise


# -- install -------------------------------------------------------------------------


def install(module: Any = None) -> None:
    """Wrap httpcore (called when it is imported, or at once if it already is)."""
    if _patches.count:
        return
    import httpcore._async.connection as async_connection
    import httpcore._async.http11 as async_http11
    import httpcore._backends.anyio as anyio_backend
    import httpcore._backends.sync as sync_backend
    import httpcore._sync.connection as sync_connection
    import httpcore._sync.http11 as sync_http11
    import httpcore._synchronization as synchronization

    _patches.add_default(anyio_backend.AnyIOStream, _HISTORY, None)
    _patches.add_default(sync_backend.SyncStream, _HISTORY, None)
    _patches.wrap(
        async_connection.AsyncHTTPConnection, "_connect", _patches.when_enabled(_connect_async)
    )
    _patches.wrap(sync_connection.HTTPConnection, "_connect", _connect_sync)
    connection_classes: list[tuple[type, str, str | None, bool]] = [
        (async_http11.AsyncHTTP11Connection, "handle_async_request", "aclose", False),
        (sync_http11.HTTP11Connection, "handle_request", "close", False),
    ]
    try:
        import httpcore._async.http2 as async_http2
        import httpcore._sync.http2 as sync_http2
    except ImportError:  # the optional h2 package is not installed
        pass
    else:
        connection_classes += [
            (async_http2.AsyncHTTP2Connection, "handle_async_request", None, True),
            (sync_http2.HTTP2Connection, "handle_request", None, True),
        ]
    for cls, start, close, multiplexed in connection_classes:
        _patches.add_default(cls, _HISTORY, None)
        # Per request: plain functions (see _patching for the measured reason).
        _patches.replace(cls, start, _make_request_started(multiplexed))
        _patches.replace(cls, "_response_closed", _make_response_closed)
        if close is not None:
            _patches.wrap(cls, close, _connection_closing)
    _patches.wrap(synchronization.AsyncEvent, "wait", _patches.when_enabled(_event_wait_async))
    _patches.wrap(synchronization.Event, "wait", _event_wait_sync)
    _patches.enabled = True


def uninstall() -> None:
    _patches.restore()


def _request_fields(request: object) -> tuple[str | None, str | None]:
    """(method, URL) of an ``httpcore.Request``, whose parts are bytes."""
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


LIBRARY = Library(
    name=NAME,
    modules=("httpcore",),
    install=install,
    uninstall=uninstall,
    exceptions=ExceptionNames(
        timeout=frozenset({"httpx.TimeoutException", "httpcore.TimeoutException"}),
        pool_timeout=frozenset({"httpx.PoolTimeout", "httpcore.PoolTimeout"}),
        connect_timeout=frozenset({"httpx.ConnectTimeout", "httpcore.ConnectTimeout"}),
        write_timeout=frozenset({"httpx.WriteTimeout", "httpcore.WriteTimeout"}),
        connect_error=frozenset({"httpx.ConnectError", "httpcore.ConnectError"}),
        h1_parse_error=frozenset({"h11.RemoteProtocolError", "httpcore.RemoteProtocolError"}),
    ),
    request_fields=_request_fields,
    # anyio stops reading an idle stream: httpcore finds the FIN at the next
    # checkout (``is_readable``), so the idle time is an upper bound.
    sees_idle_fin=False,
    default_keepalive_s=5.0,
    advice=LibraryAdvice(
        keepalive_setting=lambda seconds: (
            f"httpx.AsyncClient(limits=httpx.Limits(keepalive_expiry={seconds}))"
        ),
        keepalive_setting_name="keepalive_expiry",
        disable_keepalive="httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) "
        "(or httpx.Client)",
        retry_reset="httpx never retries a request that met a reset: retry idempotent requests "
        "once on httpx.RemoteProtocolError / httpx.ReadError / httpx.WriteError, with backoff "
        "(httpx.HTTPTransport(retries=...) covers only failed connects).",
        retry_connect="httpx.AsyncHTTPTransport(retries=3) retries failed connects (only those) "
        "to ride out restarts.",
        burst_limit="limit the burst with httpx.Limits(max_connections=...).",
        pool_limits="httpx.AsyncClient(limits=httpx.Limits(max_connections=..., "
        "max_keepalive_connections=...), timeout=httpx.Timeout(..., pool=...)) (default 100 "
        "connections); close streamed responses (async with client.stream(...), await "
        "response.aclose()).",
        connect_timeout="httpx.Timeout(..., connect=...) bounds it; "
        "httpx.AsyncHTTPTransport(retries=...) retries it.",
        dns_timeout="httpx.Timeout(connect=...) includes DNS for AsyncClient: a lookup that hangs "
        "eats the connect budget. Run a local caching resolver.",
        dns_cache="httpx does not cache names and resolves on every new connection: run a local "
        "caching resolver (systemd-resolved, nscd, NodeLocal DNSCache); httpx.Client (sync) is "
        "not even bounded by its connect timeout while resolving.",
        alpn_enable="enable HTTP/2 with httpx.AsyncClient(http2=True) (or httpx.Client; pip "
        "install 'httpx[http2]'): it then offers h2 and http/1.1.",
        alpn_user_context='call ctx.set_alpn_protocols(["h2", "http/1.1"]) on the SSLContext you '
        "pass, and use httpx.AsyncClient(http2=True) (pip install 'httpx[http2]').",
        custom_ca="pass the context as httpx.AsyncClient(verify=ctx) (or httpx.Client).",
    ),
    contrib=ContribInstrumentor(
        entry_point="httpx",
        module="opentelemetry.instrumentation.httpx",
        class_name="HTTPXClientInstrumentor",
        instruments="httpx",
    ),
)
