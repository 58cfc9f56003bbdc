"""Turn an exception (plus what the hooks saw) into a fault kind: one pure function.

``classify`` knows no library: the library's own exception class names come
with each call (:class:`~seedance_otel._library.ExceptionNames`, from the
library's description); here are only the standard library's and anyio's. It
reads the exception chain (``__cause__``, ``__context__`` even when
suppressed, ``ExceptionGroup`` members), the class names along each MRO, every
``errno``, SSL reasons and messages, and the function in which the innermost
``CancelledError`` was raised. The hooks add what only they know: the phase,
whether the handshake completed, what ALPN was offered and negotiated, whether
the client's own total timeout fired, whether the peer closed an idle
connection. A peer's FIN carries no exception at all (``exc=None``); it goes
through the same rules. Rules are tried in the order of :data:`RULES`; the
first that matches decides. Why that order, and which exceptions each rule
covers, is documented beside each rule and in the README.
"""

from __future__ import annotations

import errno as errno_codes
import functools
import ssl
from collections.abc import Callable
from types import TracebackType

from ._library import ExceptionNames
from ._names import exception_type_name
from ._snapshot import NO_EXCEPTION, FaultKind, Phase

__all__ = [
    "RULES",
    "Classification",
    "Evidence",
    "HookFacts",
    "classify",
    "walk_chain",
]

_MAX_CHAIN = 32

# errno values (Linux numbering for the DNS codes, which are negative EAI_*).
ECONNRESET = errno_codes.ECONNRESET
EPIPE = errno_codes.EPIPE
ECONNABORTED = errno_codes.ECONNABORTED
ECONNREFUSED = errno_codes.ECONNREFUSED
EAI_AGAIN = -3
EAI_NONAME = -2
ARES_ETIMEOUT = 12

_NOT_FAULTS = frozenset(
    {
        "asyncio.exceptions.CancelledError",
        "builtins.KeyboardInterrupt",
        "builtins.SystemExit",
        "builtins.GeneratorExit",
    }
)
_TIMEOUT_CLASSES = frozenset(
    {
        "builtins.TimeoutError",
        "asyncio.exceptions.TimeoutError",
        "anyio.TimeoutError",
    }
)
_DNS_CLASSES = frozenset(
    {
        "socket.gaierror",
        "aiodns.error.DNSError",
        "pycares.AresError",
    }
)
_CERT_CLASSES = frozenset({"ssl.SSLCertVerificationError"})
_PEER_CLOSED_CLASSES = frozenset(
    {
        "builtins.ConnectionResetError",
        "builtins.BrokenPipeError",
        "builtins.ConnectionAbortedError",
        "ssl.SSLEOFError",
        "ssl.SSLZeroReturnError",
        "asyncio.exceptions.IncompleteReadError",
        "anyio.BrokenResourceError",
        "anyio.EndOfStream",
    }
)
_PEER_CLOSED_MESSAGES = (
    "server disconnected without sending a response",
    "peer closed connection without sending complete message body",
    "can not write request body",
    "cannot write to closing transport",
    "connection lost",
    "response payload is not completed",
    "connection reset by peer",
)
_NOT_TLS_PROBLEMS = (
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    ssl.SSLWantReadError,
    ssl.SSLWantWriteError,
    ssl.SSLSyscallError,
)
_DNS_SITES = ("_resolve_host", "getaddrinfo", "resolve", "gethostbyname")
_POOL_SITES = ("_wait_for_available_connection", "wait_for_connection")
_CONNECT_SITES = ("sock_connect", "start_connection", "create_connection", "connect_tcp")
_TLS_SITES = ("start_tls", "do_handshake", "wrap", "_start_handshake")


class HookFacts:
    """What the hook that saw the fault knows beyond the exception."""

    __slots__ = (
        "alpn_negotiated",
        "alpn_offered",
        "idle_close",
        "key",
        "phase",
        "timed_out",
        "tls",
    )

    def __init__(
        self,
        phase: str | None = None,
        alpn_offered: tuple[str, ...] | None = None,
        alpn_negotiated: str | None = None,
        timed_out: bool = False,
        tls: bool | None = None,
        idle_close: bool = False,
    ) -> None:
        self.phase = phase
        self.idle_close = idle_close
        """The peer closed a pooled connection nobody was using: evidence of
        its idle timeout rather than an error anyone saw."""
        self.alpn_offered = alpn_offered
        self.alpn_negotiated = alpn_negotiated
        self.timed_out = timed_out
        """The client's own (total) timeout cancelled the task: a
        ``CancelledError`` here is a timeout, not the caller giving up."""
        self.tls = tls
        """The connection is (to be) TLS."""
        self.key = (phase, alpn_offered, alpn_negotiated, timed_out, tls, idle_close)
        """Every fact, for remembering a verdict (see :func:`classify`): built
        here, where the values are at hand, rather than by a call per fault."""


class Classification:
    """The verdict: kind, phase, errno, which rule decided, and the message to show."""

    __slots__ = ("errno", "error_type", "kind", "message", "phase", "rule")

    def __init__(
        self,
        kind: FaultKind,
        phase: str,
        errno: int | None,
        rule: str,
        message: str = "",
        error_type: str = NO_EXCEPTION,
    ) -> None:
        self.kind = kind
        self.phase = phase
        self.errno = errno
        self.rule = rule
        self.message = message
        """``str(exc)``, or the first non-empty message down the chain (httpx and
        anyio often raise ``ReadError('')``)."""
        self.error_type = error_type
        """The type of the exception itself (``exception_type_name``), or
        ``NO_EXCEPTION`` for a FIN: part of the verdict because the class is
        part of what the verdict is remembered by, so a counted fault reads it
        here instead of naming its class again."""

    def __repr__(self) -> str:
        return f"Classification({self.kind.value!r}, phase={self.phase!r}, rule={self.rule!r})"


class Evidence:
    """Everything the rules look at, extracted once from the exception chain."""

    __slots__ = (
        "cancel_sites",
        "chain",
        "errnos",
        "facts",
        "first_errno",
        "first_message",
        "known",
        "names",
        "ssl_reasons",
        "text",
    )

    def __init__(
        self,
        chain: tuple[BaseException, ...],
        names: frozenset[str],
        errnos: frozenset[int],
        text: str,
        ssl_reasons: frozenset[str],
        cancel_sites: tuple[str, ...],
        facts: HookFacts,
        known: ExceptionNames,
        first_message: str = "",
        first_errno: int | None = None,
    ) -> None:
        self.chain = chain
        self.known = known
        """The library's exception names merged with the standard ones."""
        self.first_message = first_message
        self.first_errno = first_errno
        self.names = names
        self.errnos = errnos
        self.text = text
        """Every message in the chain, lowercased, one per line."""
        self.ssl_reasons = ssl_reasons
        self.cancel_sites = cancel_sites
        self.facts = facts

    def has(self, *names: str) -> bool:
        return not self.names.isdisjoint(names)

    def has_any(self, names: frozenset[str]) -> bool:
        return not names.isdisjoint(self.names)

    def message_has(self, *needles: str) -> bool:
        text = self.text
        return any(n in text for n in needles)

    def cancelled_in(self, sites: tuple[str, ...]) -> bool:
        return any(site.endswith(s) for site in self.cancel_sites for s in sites)

    @property
    def is_fin(self) -> bool:
        """No exception: the peer closed the connection with a FIN."""
        return not self.chain

    @property
    def is_timeout(self) -> bool:
        if not self.known.timeout.isdisjoint(self.names):
            return True
        return self.facts.timed_out and "asyncio.exceptions.CancelledError" in self.names

    @property
    def phase(self) -> str | None:
        return self.facts.phase


_HOPS = range(_MAX_CHAIN - 1)
_MEMBERS = (tuple, list)
"""What an exception group's ``exceptions`` is (the standard library's, the
backport's, anyio's)."""


def walk_chain(exc: BaseException) -> list[BaseException]:
    """Every exception reachable from ``exc``: causes, contexts, group members.

    From each exception we follow ``__cause__``, else ``__context__`` - even
    when ``__suppress_context__`` is set: httpcore's ``raise exc from None``
    hides the errno there.
    """
    # Most chains are a line (no groups): followed without the stack and set.
    line = [exc]
    current = exc
    for _ in _HOPS:
        if isinstance(getattr(current, "exceptions", None), _MEMBERS):
            return _walk_tree(exc)
        linked = current.__cause__
        if linked is None:
            linked = current.__context__
            if linked is None:
                break
        for earlier in line:
            if earlier is linked:  # a cycle
                return line
        line.append(linked)
        current = linked
    return line


def _walk_tree(exc: BaseException) -> list[BaseException]:
    """:func:`walk_chain` through exception groups: depth first, each exception once."""
    out: list[BaseException] = []
    seen: set[int] = set()
    stack = [exc]
    while stack and len(out) < _MAX_CHAIN:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        out.append(current)
        members = getattr(current, "exceptions", None)
        if isinstance(members, _MEMBERS):
            stack.extend(m for m in reversed(members) if isinstance(m, BaseException))
        linked = current.__cause__ if current.__cause__ is not None else current.__context__
        if linked is not None:
            stack.append(linked)
    return out


@functools.lru_cache(maxsize=512)
def _class_names(cls: type) -> frozenset[str]:
    names = set()
    for base in cls.__mro__:
        module = base.__module__
        # Public re-exports: httpx/httpcore/anyio define their classes in
        # private modules; match them by their public names too.
        names.add(f"{module}.{base.__qualname__}")
        top = module.partition(".")[0]
        if top != module:
            names.add(f"{top}.{base.__qualname__}")
    return frozenset(names)


def _qualified_names(exc: BaseException) -> frozenset[str]:
    cls: type = type(exc)
    return _class_names(cls)


def _raise_site(tb: TracebackType | None) -> str:
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    code = last.tb_frame.f_code
    name = getattr(code, "co_qualname", code.co_name)
    return f"{last.tb_frame.f_globals.get('__name__', '?')}:{name}"


def _errno_of(exc: BaseException) -> int | None:
    value = getattr(exc, "errno", None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


_STANDARD_NAMES = ExceptionNames(
    timeout=_TIMEOUT_CLASSES,
    dns=_DNS_CLASSES,
    certificate=_CERT_CLASSES,
    peer_closed=_PEER_CLOSED_CLASSES,
)


@functools.lru_cache(maxsize=32)
def _known(library_names: ExceptionNames) -> ExceptionNames:
    return ExceptionNames.merged((_STANDARD_NAMES, library_names))


_NO_LIBRARY = ExceptionNames()


_Shape = tuple[type, str, "int | None", "str | None", "str | None", bool]
"""What the rules can see of one exception in a chain: its class, message,
errno (an OS error's), SSL reason, raise site (a timeout's or a cancellation's:
where it was raised tells the phase) and whether it is an ``aiodns`` timeout."""


def _shapes(chain: tuple[BaseException, ...]) -> tuple[_Shape, ...]:
    """The shape of each exception in ``chain``: one call for the whole chain
    (a call costs about as much as the work done for one exception)."""
    shapes: list[_Shape] = []
    for item in chain:
        cls: type = type(item)
        code: int | None = None
        reason: str | None = None
        site: str | None = None
        ares_timeout = False
        if isinstance(item, OSError):
            if isinstance(item, ssl.SSLError):
                # Its errno is OpenSSL's SSL_ERROR_* code, not an OS errno.
                value = getattr(item, "reason", None)
                reason = value if isinstance(value, str) else None
            elif isinstance(item.errno, int):
                code = item.errno
            if isinstance(item, TimeoutError):
                site = _raise_site(item.__traceback__)
        elif cls.__module__.startswith("aiodns") and item.args and item.args[0] == ARES_ETIMEOUT:
            ares_timeout = True
        elif cls.__name__ == "CancelledError":
            # Its message is anyio's cancel scope, different every time, and no
            # rule reads it: left out, so a storm of timeouts shares one verdict.
            shapes.append((cls, "", None, None, _raise_site(item.__traceback__), False))
            continue
        try:
            message = str(item)
        except Exception:  # a broken __str__ must not hide the rest
            message = ""
        shapes.append((cls, message, code, reason, site, ares_timeout))
    return tuple(shapes)


def gather_evidence(
    exc: BaseException | None, facts: HookFacts, library_names: ExceptionNames = _NO_LIBRARY
) -> Evidence:
    chain = tuple(walk_chain(exc)) if exc is not None else ()
    return _evidence(chain, _shapes(chain), facts, library_names)


def _evidence(
    chain: tuple[BaseException, ...],
    shapes: tuple[_Shape, ...],
    facts: HookFacts,
    library_names: ExceptionNames,
) -> Evidence:
    names: set[str] = set()
    errnos: set[int] = set()
    messages: list[str] = []
    first_message = ""
    first_errno: int | None = None
    reasons: set[str] = set()
    cancel_sites: list[str] = []
    for position, (cls, message, code, reason, site, ares_timeout) in enumerate(shapes):
        names |= _class_names(cls)
        if reason is not None:
            reasons.add(reason)
        if code is not None:
            errnos.add(code)
            if first_errno is None and code:
                first_errno = code
        if site is not None:
            cancel_sites.append(site)
        if ares_timeout:
            names.add("aiodns.error.DNSError[ARES_ETIMEOUT]")
        if message and cls.__name__ != "CancelledError":  # anyio's scope messages
            if not first_message:
                first_message = (
                    message if position == 0 else f"{message} (from {exception_type_name(cls)})"
                )
            messages.append(message)
    return Evidence(
        chain=chain,
        names=frozenset(names),
        errnos=frozenset(errnos),
        text="\n".join(messages).lower(),
        ssl_reasons=frozenset(reasons),
        cancel_sites=tuple(cancel_sites),
        facts=facts,
        known=_known(library_names),
        first_message=first_message,
        first_errno=first_errno,
    )


# ---------------------------------------------------------------------------
# Rules. Each is (name, predicate, kind, phase). ``phase`` None means "the
# hook's phase, else what the exception implies".


def _idle_close(ev: Evidence) -> bool:
    # The peer closed (FIN, or RST) a pooled connection nobody was using: the
    # hooks say so with the ``idle`` phase. Evidence of its idle timeout.
    return ev.facts.idle_close


def _peer_eof(ev: Evidence) -> bool:
    # A FIN while the client waited for the answer: the peer hung up.
    return ev.is_fin


def _alpn_alert(ev: Evidence) -> bool:
    # TLS alert 120. CPython 3.11 + OpenSSL 3.0 leave ``reason`` None, so the
    # message is matched too. aiohttp wraps it in ClientConnectorSSLError,
    # httpx in ConnectError.
    return "TLSV1_ALERT_NO_APPLICATION_PROTOCOL" in ev.ssl_reasons or ev.message_has(
        "no application protocol"
    )


def _h2_spoken_to_h1(ev: Evidence) -> bool:
    # The server speaks HTTP/2 although nothing was negotiated: the h1 parser
    # meets a binary frame. aiohttp: BadStatusLine(b'\x00\x00...'); httpx
    # (h11): "illegal status line" / "illegal request line".
    if ev.facts.alpn_offered is None or ev.facts.alpn_negotiated is not None:
        return False
    binary_status = ev.has_any(ev.known.binary_status_line) and ev.message_has(
        "\\x00\\x00", "\x00\x00"
    )
    h11_garbage = ev.has_any(ev.known.h1_parse_error) and (
        ev.message_has("illegal status line", "illegal request line")
    )
    return binary_status or h11_garbage


def _not_a_fault(ev: Evidence) -> bool:
    # The caller gave up (or the process is exiting): nothing to diagnose,
    # unless the client's own timeout did the cancelling.
    if ev.is_fin or _qualified_names(ev.chain[0]).isdisjoint(_NOT_FAULTS):
        return False
    return not ev.facts.timed_out


def _certificate(ev: Evidence) -> bool:
    return ev.has_any(ev.known.certificate) or "CERTIFICATE_VERIFY_FAILED" in ev.ssl_reasons


def _other_tls(ev: Evidence) -> bool:
    # SSLEOFError / SSLZeroReturnError are the peer hanging up, not TLS
    # problems; they fall through to the reset rule.
    # SSLWantRead/WriteError are flow control that libraries handle and leave
    # behind in ``__context__``.
    eofish = {"UNEXPECTED_EOF_WHILE_READING", "EOF_OCCURRED_IN_VIOLATION_OF_PROTOCOL"}
    for item in ev.chain:
        if isinstance(item, ssl.SSLError) and not isinstance(item, _NOT_TLS_PROBLEMS):
            reason = getattr(item, "reason", None)
            if reason in eofish:
                continue
            return True
    return ev.has_any(ev.known.tls)


def _dns_timeout(ev: Evidence) -> bool:
    if ev.has_any(ev.known.dns) and (
        EAI_AGAIN in ev.errnos
        or ev.has("aiodns.error.DNSError[ARES_ETIMEOUT]")
        or ev.message_has("timeout while contacting dns servers", "temporary failure in name")
    ):
        return True
    # The client's own timeout fired while resolving.
    return ev.is_timeout and (ev.phase == Phase.DNS or ev.cancelled_in(_DNS_SITES))


def _dns_error(ev: Evidence) -> bool:
    return ev.has_any(ev.known.dns)


def _refused(ev: Evidence) -> bool:
    # Includes ExceptionGroup members (anyio, dual stack) and aiohappyeyeballs'
    # "Multiple exceptions" OSError, which keeps errno 111 when all agree.
    return (
        ECONNREFUSED in ev.errnos
        or ev.has("builtins.ConnectionRefusedError")
        or (ev.message_has("multiple exceptions") and ev.message_has("[errno 111]"))
    )


def _pool_timeout(ev: Evidence) -> bool:
    if ev.has_any(ev.known.pool_timeout):
        return True
    return ev.is_timeout and (ev.phase == Phase.POOL or ev.cancelled_in(_POOL_SITES))


def _connect_timeout(ev: Evidence) -> bool:
    if ev.has_any(ev.known.connect_timeout):
        return True
    return ev.is_timeout and (
        ev.phase in (Phase.CONNECT, Phase.TLS)
        or ev.cancelled_in(_CONNECT_SITES)
        or ev.cancelled_in(_TLS_SITES)
    )


def _write_timeout(ev: Evidence) -> bool:
    return ev.has_any(ev.known.write_timeout)


def _read_timeout(ev: Evidence) -> bool:
    # httpx ReadTimeout, aiohttp SocketTimeoutError ("Timeout on reading data
    # from socket"), or the total timeout firing after the request was sent.
    return ev.is_timeout


def _peer_closed(ev: Evidence) -> bool:
    if ECONNRESET in ev.errnos or EPIPE in ev.errnos or ECONNABORTED in ev.errnos:
        return True
    if ev.has_any(ev.known.peer_closed):
        return True
    return ev.message_has(*_PEER_CLOSED_MESSAGES)


def _phase_tls(ev: Evidence) -> str:
    return Phase.TLS.value


def _phase_dns(ev: Evidence) -> str:
    return Phase.DNS.value


def _phase_idle(ev: Evidence) -> str:
    return Phase.IDLE.value


def _phase_pool(ev: Evidence) -> str:
    return Phase.POOL.value


def _phase_connect_or_tls(ev: Evidence) -> str:
    if ev.phase == Phase.TLS or ev.cancelled_in(_TLS_SITES):
        return Phase.TLS.value
    # asyncio waits for the TLS handshake in _create_connection_transport
    # (the TCP connect is already done when a socket is passed in).
    if ev.facts.tls and ev.cancelled_in(("_create_connection_transport",)):
        return Phase.TLS.value
    return Phase.CONNECT.value


def _phase_from_hook(ev: Evidence) -> str:
    if ev.phase:
        return str(ev.phase)
    if ev.has_any(ev.known.connect_error):
        return Phase.CONNECT.value
    return Phase.REQUEST.value


Rule = tuple[str, Callable[[Evidence], bool], "FaultKind | None", Callable[[Evidence], str]]

RULES: tuple[Rule, ...] = (
    ("idle_close", _idle_close, FaultKind.PEER_CLOSED_IDLE, _phase_idle),
    ("peer_eof", _peer_eof, FaultKind.CONNECTION_RESET, _phase_from_hook),
    ("not_a_fault", _not_a_fault, None, _phase_from_hook),
    ("alpn_alert", _alpn_alert, FaultKind.ALPN_MISMATCH, _phase_tls),
    ("h2_spoken_to_h1", _h2_spoken_to_h1, FaultKind.ALPN_MISMATCH, _phase_from_hook),
    ("certificate", _certificate, FaultKind.TLS_ERROR, _phase_tls),
    ("other_tls", _other_tls, FaultKind.TLS_ERROR, _phase_tls),
    ("dns_timeout", _dns_timeout, FaultKind.DNS_TIMEOUT, _phase_dns),
    ("dns_error", _dns_error, FaultKind.DNS_ERROR, _phase_dns),
    ("refused", _refused, FaultKind.CONNECT_REFUSED, _phase_connect_or_tls),
    ("pool_timeout", _pool_timeout, FaultKind.POOL_TIMEOUT, _phase_pool),
    ("connect_timeout", _connect_timeout, FaultKind.CONNECT_TIMEOUT, _phase_connect_or_tls),
    ("write_timeout", _write_timeout, FaultKind.WRITE_TIMEOUT, _phase_from_hook),
    ("read_timeout", _read_timeout, FaultKind.READ_TIMEOUT, _phase_from_hook),
    ("peer_closed", _peer_closed, FaultKind.CONNECTION_RESET, _phase_from_hook),
)


def _first_errno(ev: Evidence) -> int | None:
    """The first non-zero OSError errno down the chain (outermost first)."""
    return ev.first_errno


_VERDICTS_KEPT = 512
"""Distinct exception shapes whose verdicts are kept per library (then the
memory starts afresh): a fault storm repeats a handful."""
_LIBRARIES_KEPT = 16
_verdicts: dict[int, tuple[ExceptionNames, dict[object, Classification | None]]] = {}
_UNKNOWN = object()


def classify(
    exc: BaseException | None,
    facts: HookFacts | None = None,
    names: ExceptionNames = _NO_LIBRARY,
) -> Classification | None:
    """The fault kind behind ``exc`` (``None``: a FIN), or ``None`` if it is no
    connection fault. ``names`` are the library's exception names.

    The verdict is a function of what :func:`_shapes` reads from each exception
    in the chain and of the hook's facts, so it is remembered by those: in a
    fault storm every fault after the first skips the rules (a verdict is
    shared, never changed).
    """
    facts = facts or HookFacts()
    if exc is None:
        return _decide(gather_evidence(None, facts, names))
    chain = tuple(walk_chain(exc))
    shapes = _shapes(chain)
    key = (shapes, facts.key)
    entry = _verdicts.get(id(names))
    if entry is None or entry[0] is not names:
        if len(_verdicts) >= _LIBRARIES_KEPT:
            _verdicts.clear()
        entry = _verdicts[id(names)] = (names, {})
    known = entry[1]
    try:
        verdict = known.get(key, _UNKNOWN)
    except TypeError:  # an unhashable errno or reason from an odd exception class
        return _decide(_evidence(chain, shapes, facts, names))
    if verdict is _UNKNOWN:
        verdict = _decide(_evidence(chain, shapes, facts, names))
        if len(known) >= _VERDICTS_KEPT:
            known.clear()
        known[key] = verdict
    return verdict  # type: ignore[return-value]


def _decide(ev: Evidence) -> Classification | None:
    for name, predicate, kind, phase_of in RULES:
        if predicate(ev):
            if kind is None:
                return None
            return Classification(
                kind=kind,
                phase=phase_of(ev),
                errno=_first_errno(ev),
                rule=name,
                message=ev.first_message,
                error_type=exception_type_name(ev.chain[0]) if ev.chain else NO_EXCEPTION,
            )
    return None
