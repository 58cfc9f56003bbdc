"""aiohttp: connection history and fault capture, per attempt, within budget.

Two hooks run on every request, and both are plain functions with aiohttp's
exact signature (see ``_patching`` for why):

* ``Connection.__init__`` - aiohttp hands a connection (new or pooled) to one
  attempt. We stamp the start of its use on the ``ResponseHandler``'s
  :class:`ConnectionHistory` (created on first use, with the socket's
  addresses and TLS facts).
* ``BaseConnector._release`` - the attempt gives the connection back. aiohttp
  closes it (``should_close=True``) inside the ``except`` block that handles a
  failed attempt, so the exception is ``sys.exc_info()`` there - including the
  attempt that aiohttp then retries silently (idempotent requests after a reset
  on a reused connection), which ``on_request_exception`` never shows. It is
  taken only if it was raised through this connection's frames: an
  application may close a response inside its own ``except`` block.

Everything else runs per new connection or only on a fault (``PatchSet.wrap``,
or ``replace`` for the two that run on every connection and mostly only
pass the call on):

* ``TCPConnector._create_connection`` - DNS, refused, TLS and reset-on-connect
  failures, with the request at hand, and the sockets tried (peer address,
  local port, cookie; every address when several were: ``connect_attempts``).
* ``aiohttp.connector.ceil_timeout`` (``replace``) - the connect and
  sock_connect timeouts (used only when a new connection is needed): a
  ``TimeoutError`` leaving it is a connect, DNS or pool timeout, told apart by
  where the cancelled task was. Without such a timeout (aiohttp's default) it
  passes aiohttp's own context manager on.
* ``BaseConnector._wait_for_available_connection`` - runs only when the pool
  is full; marks the pool phase.
* ``TCPConnector._resolve_host`` - times name resolution (DNS split); for
  an IP literal, nothing is resolved and the hook steps aside.
* ``ResponseHandler.connection_lost`` (``replace``) - closes the history, and
  sees a peer closing an *idle* pooled connection (aiohttp clears
  ``transport`` before closing one itself).
* ``TimerContext.timeout`` - fires only when the total timeout expires; marks
  the task so the ``CancelledError`` that follows reads as a timeout.

A many-signal ``TraceConfig`` costs about 10 us per request; see
``benchmarks/`` for what these cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import sys
import time
from types import CodeType
from typing import Any

from .. import _dns, _layers, _runtime
from .._capture import FaultContext, capture
from .._classify import HookFacts
from .._connection import ConnectionHistory, SocketFacts, socket_facts
from .._frames import find_local, raised_through
from .._guard import Guard, report_internal_error
from .._library import ContribInstrumentor, ExceptionNames, Library, LibraryAdvice
from .._snapshot import Phase
from . import connect_attempts
from ._patching import PatchSet, signature_is
from .ssl_alpn import alpn_offered_by, mark_offered

__all__ = ["install", "uninstall"]

NAME = "aiohttp"
_HISTORY = "_seedance_history"
_patches = PatchSet(NAME)
_timed_out_tasks: set[asyncio.Task[Any]] = set()
"""Tasks whose total timeout fired, until their first fault reads the mark or
they end (a done callback drops them). A plain set, not a ``WeakSet``: every
fault asks whether it is empty, and a ``WeakSet`` answers in Python."""
_pool_wait_started: contextvars.ContextVar[float] = contextvars.ContextVar(
    "seedance_otel_aiohttp_pool_wait", default=0.0
)
"""When this task last started waiting for a free pool slot (0.0: never)."""
_monotonic = time.monotonic
_handler_codes: frozenset[CodeType] = frozenset()
"""aiohttp's functions that close a failed attempt's connection (see ``_end``)."""

_REQUEST, _RESPONSE, _CONNECT = Phase.REQUEST.value, Phase.RESPONSE.value, Phase.CONNECT.value
"""Read once: an enum member's ``value`` is a Python-level property (per fault)."""

# The guards of hooks that run per request or per connection, each made once.
_GUARD_TIMER = Guard("aiohttp TimerContext.timeout")
_CREATE = "aiohttp create connection"
_GUARD_RESOLVE_FAILED = Guard("aiohttp resolve (failure)")
_GUARD_RESOLVE = Guard("aiohttp resolve")


# -- per attempt ------------------------------------------------------------


def _begin(protocol: Any, key: Any) -> None:
    history = protocol._seedance_history
    if history is None:  # a connection made where ``_create_connection`` did not see it
        history = _new_history(protocol, getattr(key, "host", None), getattr(key, "port", None))
    history.begin_request(_monotonic())


def _end(protocol: Any, should_close: bool) -> None:
    history = getattr(protocol, _HISTORY, None)
    if history is None or not history.active:
        return
    if not should_close:
        history.end_request_ok(_monotonic())
        return
    # aiohttp closes the connection of an attempt: failed, or given up on.
    # Written out here rather than called: this runs for every faulting
    # request, and a Python call costs some 2,000 instructions.
    exc = sys.exc_info()[1]
    if exc is not None:
        # Usually aiohttp's own request function is handling ``exc``: its
        # code says enough (else ``_failed_on`` searches the frames).
        tb = exc.__traceback__
        if (tb is not None and tb.tb_frame.f_code in _handler_codes) or _failed_on(protocol, exc):
            _on_attempt_failed(history, exc)
            history.end_request_failed()
            return
    if protocol.should_close:
        history.end_request_failed()  # closed before the response was complete
    else:
        history.end_request_ok(_monotonic())


# Per request, the hooks keep try/except rather than ``with Guard``: measured,
# the context manager's two calls cost ~130 ns a block, try costs nothing until
# something fails.


def _make_connection_init(original: Any) -> Any:
    if signature_is(original, ("self", "connector", "key", "protocol", "loop")):

        def __init__(self: Any, connector: Any, key: Any, protocol: Any, loop: Any) -> None:
            original(self, connector, key, protocol, loop)
            if _patches.enabled:
                try:
                    _begin(protocol, key)
                except Exception:
                    report_internal_error("aiohttp Connection")

        return __init__

    def generic_init(
        self: Any, connector: Any, key: Any, protocol: Any, *args: Any, **kw: Any
    ) -> None:
        original(self, connector, key, protocol, *args, **kw)
        if _patches.enabled:
            try:
                _begin(protocol, key)
            except Exception:
                report_internal_error("aiohttp Connection")

    return generic_init


def _make_release(original: Any) -> Any:
    if signature_is(original, ("self", "key", "protocol"), ("should_close",)):

        def _release(self: Any, key: Any, protocol: Any, *, should_close: bool = False) -> Any:
            if _patches.enabled:
                try:
                    _end(protocol, should_close)
                except Exception:
                    report_internal_error("aiohttp release")
            if should_close:
                return original(self, key, protocol, should_close=True)
            return original(self, key, protocol)

        return _release

    def generic_release(self: Any, key: Any, protocol: Any, *args: Any, **kw: Any) -> Any:
        if _patches.enabled:
            try:
                _end(protocol, bool(kw.get("should_close")))
            except Exception:
                report_internal_error("aiohttp release")
        return original(self, key, protocol, *args, **kw)

    return generic_release


def _failed_on(protocol: Any, exc: BaseException) -> bool:
    """``exc``, being handled while the connection closes, is that attempt's
    failure (not an application exception being handled around the close).

    Asked when aiohttp's own request function is not the one handling it
    (that function closes only the attempt's connection, so its code says
    enough, and ``_end`` checks it first): the frames ``exc`` was raised
    through are searched, which reads their locals (a few microseconds a
    frame).
    """
    return raised_through(exc, lambda v: _belongs(v, protocol))


def _request_handler_codes(request: Any) -> frozenset[CodeType]:
    """The code of the aiohttp function that closes an attempt's connection in
    its ``except`` when the attempt fails: ``_connect_and_send_request``, nested
    in ``ClientSession._request`` since aiohttp 3.12, else ``_request`` itself.
    Empty if neither is found (the frame search then decides)."""
    with contextlib.suppress(ValueError):  # a wrapper around it: its own code
        request = inspect.unwrap(request)
    code = getattr(request, "__code__", None)
    if not isinstance(code, CodeType):
        return frozenset()
    nested = [
        const
        for const in code.co_consts
        if isinstance(const, CodeType) and const.co_name == "_connect_and_send_request"
    ]
    return frozenset(nested or [code])


def _belongs(value: Any, protocol: Any) -> bool:
    """``value`` is this connection's protocol, or holds it (Connection, ClientResponse,
    StreamReader, ClientRequest.send's ``conn``)."""
    return value is protocol or getattr(value, "_protocol", None) is protocol


def _new_history(
    protocol: Any, host: str | None, port: int | None, sock: SocketFacts | None = None
) -> ConnectionHistory:
    """The history of a new connection; ``sock``: its socket's facts, when
    they were read already (as its connect attempt ended)."""
    history = _runtime.open_history(NAME, host, port)
    transport = protocol.transport
    if transport is not None:
        if sock is None:
            sock = socket_facts(
                transport.get_extra_info("socket"),
                transport.get_extra_info("peername"),
                transport.get_extra_info("sockname"),
            )
        history.socket = sock
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            history.set_tls(ssl_object, alpn_offered_by(getattr(ssl_object, "context", None)))
    protocol._seedance_history = history
    return history


def _is_request(name: str, value: Any) -> bool:
    cls = type(value).__name__
    return (name == "req" and cls.endswith("ClientRequest")) or (
        name == "self" and cls.endswith("ClientResponse")
    )


def _request_in_frames() -> Any:
    """The ``ClientRequest``/``ClientResponse`` of the failing attempt (fault path)."""
    return find_local(_is_request, skip=2)


def _on_attempt_failed(history: ConnectionHistory, exc: BaseException) -> None:
    if _runtime.RUNTIME is None:
        return
    phase = _RESPONSE if type(exc).__name__ == "ClientPayloadError" else _REQUEST
    capture(
        FaultContext(
            library=LIBRARY,
            exc=exc,
            facts=HookFacts(
                phase=phase,
                alpn_offered=history.alpn_offered,
                alpn_negotiated=history.alpn_negotiated,
                timed_out=_task_timed_out(exc) if _timed_out_tasks else False,
            ),
            history=history,
            find_request=_request_in_frames,
        )
    )


def _task_timed_out(exc: BaseException) -> bool:
    """Was this CancelledError the total timeout (not the caller giving up)?

    The mark is consumed by the first fault recorded for the task, whatever
    its type (aiohttp may already surface it as TimeoutError): a task that once
    timed out and is later cancelled for real (a worker at shutdown) must not
    have that read as a timeout.
    """
    # Per fault, callers ask ``_timed_out_tasks`` first (empty: no total
    # timeout has fired, a storm of resets, say), saving this call.
    if not _timed_out_tasks:
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    if task is None or task not in _timed_out_tasks:
        return False
    _timed_out_tasks.discard(task)
    if not isinstance(exc, asyncio.CancelledError):
        return False
    cancelling = getattr(task, "cancelling", None)  # 3.11+: is a cancellation in flight?
    return cancelling is None or cancelling() > 0


# -- per new connection: connect-phase faults -------------------------------


def _record_connect_fault(
    connector: Any, req: Any, exc: BaseException, started_at: float | None, timed_out: bool
) -> None:
    if _runtime.RUNTIME is None:
        return
    waited = _pool_wait_started.get()
    phase = Phase.POOL.value if waited and (started_at is None or waited >= started_at) else None
    dns, in_lookup = _dns.lookup_at_fault(started_at)
    if in_lookup:
        phase = Phase.DNS.value
    is_tls = bool(req is not None and req.is_ssl())  # asked once: a Python call
    offered = None
    if is_tls:
        get_context = getattr(connector, "_get_ssl_context", None)
        if get_context is not None:
            offered = alpn_offered_by(get_context(req))
    # The sockets tried are closed by now: what they said as they were tried.
    tried = functools.partial(connect_attempts.fields_of, connect_attempts.current())
    capture(
        FaultContext(
            library=LIBRARY,
            exc=exc,
            facts=HookFacts(
                # We are connecting: a timeout here is not a read timeout.
                phase=phase or _CONNECT,
                alpn_offered=offered,
                timed_out=timed_out,
                tls=is_tls,
            ),
            request=req,
            server_address=req.url.raw_host if req is not None else None,
            server_port=req.port if req is not None else None,
            dns=dns,
            find_connection=tried,
        )
    )


async def _create_connection(
    wrapped: Any, connector: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    started_at = _monotonic()
    token = _layers.enter(LIBRARY)
    attempts = connect_attempts.begin([])
    req = args[0] if args else kwargs.get("req")
    # try/except, not ``with Guard``: the context manager's two calls run on
    # every new connection (a Python call costs some 2,000 instructions).
    try:
        protocol = await wrapped(*args, **kwargs)
        try:
            _connected(protocol, req)
        except Exception:
            report_internal_error(_CREATE)
        return protocol
    except BaseException as exc:
        # A plain CancelledError here is the caller giving up, or a connect
        # timeout that ``ceil_timeout`` (below) turns into TimeoutError and
        # records; only the total timeout is recognised here.
        timed_out = _task_timed_out(exc) if _timed_out_tasks else False
        if not isinstance(exc, asyncio.CancelledError) or timed_out:
            try:
                _record_connect_fault(connector, req, exc, started_at, timed_out)
            except Exception:
                report_internal_error(_CREATE)
        raise
    finally:
        connect_attempts.end(attempts)
        _layers.leave(token)


def _connected(protocol: Any, req: Any) -> None:
    """The history of the connection just made, with the socket facts its
    one connect attempt read as it ended (not read a second time). After
    several attempts (happy eyeballs), which one won is not known here: the
    history reads its socket then, as for a connection made elsewhere."""
    tried = connect_attempts.current()
    sock = tried[0] if tried is not None and len(tried) == 1 else None
    if sock is not None and sock.sockname is None:
        sock = None  # the attempt could not be read
    if req is not None and getattr(protocol, _HISTORY, None) is None:
        _new_history(protocol, req.host, req.port, sock)


class _ObservedTimeout:
    """``ceil_timeout``'s context manager, watched for the TimeoutError it raises."""

    __slots__ = ("_inner", "_started_at")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._started_at = _monotonic()

    async def __aenter__(self) -> Any:
        return await self._inner.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self._inner.__aexit__(*exc_info)
        except asyncio.TimeoutError as exc:
            with Guard("aiohttp connect timeout"):
                req = find_local(lambda n, v: n == "req" and hasattr(v, "is_ssl"), skip=1)
                connector = find_local(
                    lambda n, v: n == "self" and hasattr(v, "_get_ssl_context"), skip=1
                )
                _record_connect_fault(connector, req, exc, self._started_at, False)
            raise


def _make_ceil_timeout(original: Any) -> Any:
    # A plain function (``replace``): it runs twice per new connection, and
    # with aiohttp's default timeouts (none for ``connect``) it only passes
    # the call on: the check is written in it, not called.
    threshold = inspect.Parameter.empty
    if signature_is(original, ("delay", "ceil_threshold")):
        threshold = inspect.signature(original).parameters["ceil_threshold"].default
    if threshold is not inspect.Parameter.empty:  # aiohttp's own default, whatever it is

        def ceil_timeout(delay: Any, ceil_threshold: Any = threshold) -> Any:
            inner = original(delay, ceil_threshold)
            if delay is None or delay <= 0 or not _patches.enabled:
                return inner  # no timeout at all: nothing to see
            return _ObservedTimeout(inner)

        return ceil_timeout

    def generic_ceil_timeout(*args: Any, **kwargs: Any) -> Any:
        inner = original(*args, **kwargs)
        delay = args[0] if args else kwargs.get("delay")
        if delay is None or delay <= 0 or not _patches.enabled:
            return inner
        return _ObservedTimeout(inner)

    return generic_ceil_timeout


async def _wait_for_available_connection(
    wrapped: Any, connector: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # The mark outlives this call on purpose: a connect timeout that fires
    # while we wait surfaces later, from ceil_timeout in connect().
    _pool_wait_started.set(_monotonic())
    try:
        return await wrapped(*args, **kwargs)
    except asyncio.CancelledError as exc:
        if _task_timed_out(exc):  # the total timeout, while queued for a connection
            with Guard("aiohttp pool wait"):
                req = find_local(lambda n, v: n == "req" and hasattr(v, "is_ssl"), skip=1)
                _record_connect_fault(None, req, exc, None, True)
        raise


# -- per connection: the peer closes an idle pooled connection ----------------


def _lost(protocol: Any, exc: BaseException | None) -> None:
    history = protocol._seedance_history
    if history is not None:
        # aiohttp sets ``transport`` to None before closing a connection
        # itself; still set means the peer (or the network) ended it.
        # ``broken`` first: a connection whose request failed is not idle (one
        # call fewer per fault in a storm).
        if protocol.transport is not None and not history.broken and history.idle_in_pool:
            capture(
                FaultContext(
                    library=LIBRARY,
                    exc=exc,
                    facts=HookFacts(phase=Phase.IDLE.value, idle_close=True),
                    history=history,
                    in_request=False,
                )
            )
        _runtime.connection_closed(history)


def _make_connection_lost(original: Any) -> Any:
    # A plain function (``replace``): it runs once per connection.
    if signature_is(original, ("self", "exc")):

        def connection_lost(self: Any, exc: BaseException | None) -> Any:
            if _patches.enabled:
                try:
                    _lost(self, exc)
                except Exception:
                    report_internal_error("aiohttp connection_lost")
            return original(self, exc)

        return connection_lost

    def generic_connection_lost(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _patches.enabled:
            try:
                _lost(self, args[0] if args else kwargs.get("exc"))
            except Exception:
                report_internal_error("aiohttp connection_lost")
        return original(self, *args, **kwargs)

    return generic_connection_lost


# -- per new connection: DNS ----------------------------------------------------


def _resolve_host(
    wrapped: Any, connector: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    probe = None
    try:
        probe = _dns.start_lookup(str(args[0] if args else kwargs.get("host")))
    except Exception:
        report_internal_error("aiohttp resolve (start)")
    if probe is None:
        # An IP literal (nothing is resolved, nothing to time): aiohttp's own
        # coroutine, without a frame of ours around it.
        return wrapped(*args, **kwargs)
    return _timed_resolve(wrapped, args, kwargs, probe)


async def _timed_resolve(
    wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any], probe: _dns.DnsProbe
) -> Any:
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        if not isinstance(exc, asyncio.CancelledError):
            with _GUARD_RESOLVE_FAILED:
                probe.finish(exc)
        raise
    with _GUARD_RESOLVE:
        probe.finish()
    return result


# -- total timeout ---------------------------------------------------------------


def _make_timer_timeout(original: Any) -> Any:
    # A plain function, not wrapt: aiohttp reads ``timer.timeout`` on every
    # request to register it as a callback, and a wrapt descriptor would build
    # a bound wrapper each time.
    def timeout(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _patches.enabled:
            with _GUARD_TIMER:
                for task in getattr(self, "_tasks", ()):
                    if task not in _timed_out_tasks:
                        _timed_out_tasks.add(task)
                        task.add_done_callback(_timed_out_tasks.discard)
        return original(self, *args, **kwargs)

    return timeout


# -- install ---------------------------------------------------------------------


def _mark_default_contexts(connector_module: Any) -> None:
    """aiohttp builds its default SSL contexts at import, maybe before us.

    Rebuild one the way aiohttp does (with our ALPN hook installed) to learn
    what they offer, instead of hard-coding it.
    """
    make = getattr(connector_module, "_make_ssl_context", None)
    if make is None:
        return
    for verified, name in ((True, "_SSL_CONTEXT_VERIFIED"), (False, "_SSL_CONTEXT_UNVERIFIED")):
        existing = getattr(connector_module, name, None)
        if existing is None or alpn_offered_by(existing) is not None:
            continue
        probe = make(verified)
        offered = alpn_offered_by(probe)
        if offered is not None:
            mark_offered(existing, offered)


def install(module: Any = None) -> None:
    """Hook aiohttp (called when aiohttp is imported, or at once if it already is)."""
    if _patches.count:
        return
    from aiohttp import client, client_proto, connector, helpers

    global _handler_codes  # noqa: PLW0603 - read by every failed attempt
    _handler_codes = _request_handler_codes(client.ClientSession._request)

    _patches.add_default(client_proto.ResponseHandler, _HISTORY, None)
    # Per request: plain functions (see _patching for the measured reason).
    _patches.replace(connector.Connection, "__init__", _make_connection_init)
    _patches.replace(connector.BaseConnector, "_release", _make_release)
    _patches.replace(helpers.TimerContext, "timeout", _make_timer_timeout)
    # Per new connection or per fault: wrapt-style hooks.
    _patches.wrap(
        connector.TCPConnector, "_create_connection", _create_connection, while_enabled=True
    )
    _patches.wrap(
        connector.BaseConnector,
        "_wait_for_available_connection",
        _wait_for_available_connection,
        while_enabled=True,
    )
    _patches.wrap(connector.TCPConnector, "_resolve_host", _resolve_host, while_enabled=True)
    _patches.replace(client_proto.ResponseHandler, "connection_lost", _make_connection_lost)
    _patches.replace(connector, "ceil_timeout", _make_ceil_timeout)
    # The sockets aiohappyeyeballs tries, for connect and TLS faults.
    connect_attempts.install()
    _patches.enabled = True
    with Guard("aiohttp default SSL contexts"):
        _mark_default_contexts(connector)


def uninstall() -> None:
    _patches.restore()
    connect_attempts.uninstall()


def _request_fields(request: object) -> tuple[str | None, str | None]:
    """(method, URL) of an ``aiohttp.ClientRequest``."""
    method = getattr(request, "method", None)
    url = getattr(request, "url", None)
    return (method if isinstance(method, str) else None), (None if url is None else str(url))


_ERRORS = "aiohttp.client_exceptions."

LIBRARY = Library(
    name=NAME,
    modules=("aiohttp",),
    install=install,
    uninstall=uninstall,
    exceptions=ExceptionNames(
        timeout=frozenset({_ERRORS + "ServerTimeoutError"}),
        dns=frozenset({_ERRORS + "ClientConnectorDNSError"}),
        certificate=frozenset({_ERRORS + "ClientConnectorCertificateError"}),
        tls=frozenset({_ERRORS + "ClientConnectorSSLError"}),
        peer_closed=frozenset(
            {_ERRORS + "ServerDisconnectedError", _ERRORS + "ClientConnectionResetError"}
        ),
        connect_timeout=frozenset({_ERRORS + "ConnectionTimeoutError"}),
        connect_error=frozenset({_ERRORS + "ClientConnectorError"}),
        binary_status_line=frozenset({"aiohttp.http_exceptions.BadStatusLine"}),
    ),
    request_fields=_request_fields,
    # ResponseHandler.connection_lost runs when the FIN arrives (see above).
    sees_idle_fin=True,
    # TCPConnector._resolve_host is hooked (its ThreadedResolver lands in the
    # loop's getaddrinfo too).
    times_own_lookups=True,
    default_keepalive_s=15.0,
    advice=LibraryAdvice(
        keepalive_setting=lambda seconds: f"aiohttp.TCPConnector(keepalive_timeout={seconds})",
        keepalive_setting_name="keepalive_timeout",
        disable_keepalive="aiohttp.TCPConnector(force_close=True)",
        retries_idempotent_on_reuse=True,
        retry_reset="aiohttp already retries idempotent requests once on a reused connection; "
        "retry POST/PATCH yourself (with an idempotency key) on "
        "aiohttp.ServerDisconnectedError / aiohttp.ClientOSError, with backoff.",
        retry_connect="aiohttp never retries a failed connect: retry "
        "aiohttp.ClientConnectorError with backoff.",
        burst_limit="limit the burst with aiohttp.TCPConnector(limit_per_host=...).",
        pool_limits="aiohttp.TCPConnector(limit=..., limit_per_host=...) (default 100 in all, "
        "unlimited per host); release every response (async with session.get(...) as resp); "
        "ClientTimeout(connect=...) includes the pool wait.",
        pool_timeout_note="aiohttp reports it as ConnectionTimeoutError, which reads like a "
        "slow connect.",
        connect_timeout="aiohttp.ClientTimeout(sock_connect=...) bounds the TCP connect; "
        "connect=... also covers DNS and the pool wait.",
        dns_timeout="aiohttp.ClientTimeout(total=..., connect=...) include DNS (sock_connect "
        "does not); use aiohttp.AsyncResolver(timeout=1.0, tries=2) so resolution fails fast "
        "with a DNS error, and TCPConnector(ttl_dns_cache=300) to resolve less often.",
        dns_resolver_timeout="aiohttp.TCPConnector(resolver=aiohttp.AsyncResolver(timeout=1.0, "
        "tries=2), ttl_dns_cache=300): c-ares waits 5 s per try by default (11 s in all), and "
        "a longer DNS cache (default 10 s) means fewer lookups to fail.",
        dns_cache="aiohttp.TCPConnector(ttl_dns_cache=300) caches answers longer (default 10 s); "
        "aiohttp.AsyncResolver(timeout=1.0, tries=2) fails fast instead of glibc's 5 s per try.",
        alpn_enable="aiohttp speaks only HTTP/1.1 and cannot talk to an h2-only server: use "
        "httpx.AsyncClient(http2=True) for this peer, or have the server accept http/1.1.",
        alpn_user_context="aiohttp passes a user ssl.SSLContext as it is, with no ALPN: call "
        'ctx.set_alpn_protocols(["http/1.1"]) before TCPConnector(ssl=ctx) so the server can '
        "choose HTTP/1.1. If the server speaks only h2, aiohttp cannot talk to it (it has no "
        "HTTP/2): use httpx.AsyncClient(http2=True) for this peer.",
        custom_ca="pass the context as aiohttp.TCPConnector(ssl=ctx).",
    ),
    contrib=ContribInstrumentor(
        entry_point="aiohttp-client",
        module="opentelemetry.instrumentation.aiohttp_client",
        class_name="AioHttpClientInstrumentor",
        instruments="aiohttp",
    ),
)
