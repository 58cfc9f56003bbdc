"""What the rest of the package may know about an instrumented library.

Each instrumented library describes itself once, in its own module under
``seedance_otel.instrumentation``, as a :class:`Library`; the registry
(``seedance_otel.instrumentation.registry``) lists them. The classifier,
capture, diagnosis, metrics, ``auto`` and the entry point read library facts
from these descriptions only, so no library's name is written anywhere but
in its own module. Adding a library is one module with its ``Library`` and
one registry line (see docs/architecture.md).

This module holds data types only and imports nothing of the package, so
every layer may depend on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

__all__ = ["ContribInstrumentor", "ExceptionNames", "Library", "LibraryAdvice", "RequestFields"]

RequestFields = Callable[[object], tuple[str | None, str | None]]
"""Reads (method, URL) from a library's request object; the URL is redacted by
the capture path, never by the library module."""


@dataclasses.dataclass(frozen=True, slots=True)
class ExceptionNames:
    """The library's exception classes the classifier must recognise, by full name.

    Names are ``module.Qualname`` as the class's MRO reports them; a class
    defined in a private module also matches by its top-level package
    (``httpx.ConnectError`` for ``httpx._exceptions.ConnectError``).
    """

    timeout: frozenset[str] = frozenset()
    """Any timeout the library raises (its base timeout class is enough)."""
    dns: frozenset[str] = frozenset()
    """Name resolution failed."""
    certificate: frozenset[str] = frozenset()
    """Certificate verification failed."""
    tls: frozenset[str] = frozenset()
    """A TLS failure the library wraps without keeping the ``ssl.SSLError``."""
    peer_closed: frozenset[str] = frozenset()
    """The peer ended the connection (RST or EOF before a full response)."""
    pool_timeout: frozenset[str] = frozenset()
    connect_timeout: frozenset[str] = frozenset()
    write_timeout: frozenset[str] = frozenset()
    connect_error: frozenset[str] = frozenset()
    """Raised for any failure while connecting: phase ``connect`` when no hook said."""
    h1_parse_error: frozenset[str] = frozenset()
    """The HTTP/1.1 parser met bytes that are no HTTP/1.1 (an h2 frame, say)."""
    binary_status_line: frozenset[str] = frozenset()
    """A status line that was binary: a server speaking h2 to an h1 client."""

    @staticmethod
    def merged(parts: Iterable[ExceptionNames]) -> ExceptionNames:
        """One set of names from many libraries' (the classifier's view)."""
        fields = [f.name for f in dataclasses.fields(ExceptionNames)]
        union: dict[str, set[str]] = {name: set() for name in fields}
        for part in parts:
            for name in fields:
                union[name] |= getattr(part, name)
        return ExceptionNames(**{name: frozenset(values) for name, values in union.items()})


@dataclasses.dataclass(frozen=True, slots=True)
class LibraryAdvice:
    """The library's own words for each fix the diagnosis prints.

    Each text is complete advice for one finding, written with the library's
    real API; ``None`` where the library has nothing specific to say (the
    finding then prints its generic advice). The diagnosis prints the texts
    of the libraries seen in the evidence, one line each, so a text names
    only its own library's API (or says which other client to use instead).
    """

    keepalive_setting: Callable[[str], str] | None = None
    """Given the recommended keep-alive in seconds (already formatted), the call
    that sets it, e.g. ``httpx.AsyncClient(limits=httpx.Limits(keepalive_expiry=4))``."""
    keepalive_setting_name: str | None = None
    """The setting's name as users search for it (``keepalive_expiry``)."""
    disable_keepalive: str | None = None
    """How to stop reusing connections when the peer's timeout is too short."""
    retries_idempotent_on_reuse: bool = False
    """The library itself retries an idempotent request once when a reused
    connection fails, so the caller never saw some of the recorded resets."""
    retry_reset: str | None = None
    """How (and whether) the library retries a request that met a reset."""
    retry_connect: str | None = None
    """How to retry failed connects."""
    burst_limit: str | None = None
    """How to limit how many new connections the client opens at once."""
    pool_limits: str | None = None
    """Where the pool's size and the pool timeout are set."""
    pool_timeout_note: str | None = None
    """How the library reports a pool timeout, when that misleads (one sentence)."""
    connect_timeout: str | None = None
    """Which timeout bounds the TCP connect / handshake."""
    dns_timeout: str | None = None
    """Which of the client's timeouts covers name resolution, and how to fail fast."""
    dns_resolver_timeout: str | None = None
    """How to make the library's asynchronous (c-ares) resolver give up sooner."""
    dns_cache: str | None = None
    """Whether the library caches names, and how to reduce lookups."""
    alpn_enable: str | None = None
    """How to offer h2 and http/1.1 (or what to do if the library cannot)."""
    alpn_user_context: str | None = None
    """What to do when the application passes its own ``SSLContext``."""
    custom_ca: str | None = None
    """Where the library takes an ``SSLContext`` that trusts another CA."""


@dataclasses.dataclass(frozen=True, slots=True)
class ContribInstrumentor:
    """The OpenTelemetry contrib instrumentor for the same library, which
    ``import seedance_otel.auto`` also enables (spans to join)."""

    entry_point: str
    """Its name under ``opentelemetry_instrumentor`` (for
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``)."""
    module: str
    class_name: str
    instruments: str
    """The module it instruments: enabled only where that is installed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Library:
    """One instrumented library, described by its own module.

    ``install`` runs when any of ``modules`` is imported (or at once if one
    already is); a library with no ``modules`` (the standard library) is
    installed by ``instrument()`` itself.
    """

    name: str
    """The snapshot's ``library`` value and the ``seedance.library`` attribute."""
    modules: tuple[str, ...]
    install: Callable[[], None]
    uninstall: Callable[[], None]
    exceptions: ExceptionNames = ExceptionNames()
    request_fields: RequestFields | None = None
    sees_idle_fin: bool = False
    """True if the library notices a peer's FIN on an idle pooled connection as
    it arrives (the idle time is then the peer's timeout itself); False if it
    notices only at the next checkout (an upper bound)."""
    times_own_lookups: bool = False
    """The library's own hook times its name lookups; the DNS hooks below it
    then do not count them again."""
    default_keepalive_s: float | None = None
    """How long the library keeps an idle connection by default."""
    advice: LibraryAdvice = LibraryAdvice()
    contrib: ContribInstrumentor | None = None
