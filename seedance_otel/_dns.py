"""Where the time of a connect went: a probe of the name lookup in progress.

A lookup hook (aiohttp ``_resolve_host``, asyncio ``loop.getaddrinfo``,
``socket.getaddrinfo``) records a :class:`DnsProbe` in a context variable of
the task or thread doing the lookup. When a connect then fails, the connect
hook asks :func:`lookup_at_fault` whether a lookup started during this connect and
whether it was still running: that is how a generic ``ConnectTimeout`` becomes
a ``dns_timeout`` with its question and duration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import socket
import time
from collections.abc import Callable
from contextvars import ContextVar

from ._guard import Guard
from ._names import exception_type_name

__all__ = [
    "DnsFields",
    "DnsProbe",
    "LookupListener",
    "lookup_at_fault",
    "lookup_error_type",
    "lookup_listeners",
    "start_lookup",
]


@dataclasses.dataclass(frozen=True, slots=True)
class DnsFields:
    """The name lookup that preceded a failed connect, as a snapshot holds it."""

    question: str
    duration_s: float | None
    """Set when the fault happened during the lookup (it is then the lookup's
    time so far)."""


class DnsProbe:
    """One name lookup, as far as it got."""

    __slots__ = ("ended_at", "error_type", "question", "started_at")

    def __init__(self, question: str) -> None:
        self.question = question
        self.started_at = time.monotonic()
        self.ended_at: float | None = None
        self.error_type: str | None = None

    @property
    def in_progress(self) -> bool:
        return self.ended_at is None

    def duration_s(self, now: float | None = None) -> float:
        end = self.ended_at if self.ended_at is not None else (now or time.monotonic())
        return max(0.0, end - self.started_at)

    def fault_fields(self) -> tuple[bool, DnsFields]:
        """For a connect that failed after this lookup started: whether the fault
        happened *in* the lookup (still running, or it failed), and the snapshot
        fields it contributes."""
        during = self.in_progress or self.error_type is not None
        return during, DnsFields(self.question, self.duration_s() if during else None)

    def finish(self, error: BaseException | None = None, *, record: bool = True) -> None:
        """The lookup ended; ``record=False`` when another hook already timed it."""
        self.ended_at = time.monotonic()
        if error is not None:
            self.error_type = lookup_error_type(error)
        if not record:
            return
        for listener in lookup_listeners:
            with Guard("dns lookup listener"):
                listener(self)


# getaddrinfo's codes -> the values the semantic conventions give for
# ``dns.lookup.duration``'s ``error.type``; a code not listed reads as its
# lower-cased EAI name (``eai_family``). EAI_AGAIN is what glibc returns when
# no name server answered in time.
_GAI_ERROR_TYPES: dict[int, str] = {
    code: name
    for code, name in (
        (getattr(socket, "EAI_NONAME", None), "host_not_found"),
        (getattr(socket, "EAI_NODATA", None), "host_not_found"),
        (getattr(socket, "EAI_AGAIN", None), "timeout"),
        (getattr(socket, "EAI_FAIL", None), "no_recovery"),
    )
    if code is not None
}
_GAI_NAMES: dict[int, str] = {
    getattr(socket, name): name.lower() for name in dir(socket) if name.startswith("EAI_")
}
# c-ares status codes (aiodns.error.DNSError.args[0]), from ares.h.
_ARES_ERROR_TYPES = {
    1: "host_not_found",  # ARES_ENODATA
    3: "no_recovery",  # ARES_ESERVFAIL
    4: "host_not_found",  # ARES_ENOTFOUND
    6: "refused",  # ARES_EREFUSED
    11: "connection_refused",  # ARES_ECONNREFUSED
    12: "timeout",  # ARES_ETIMEOUT
}
_CHAIN_LIMIT = 8


def lookup_error_type(error: BaseException) -> str:
    """``error.type`` of a failed lookup: the resolver's error code, not the class.

    Every ``socket.gaierror`` is one class whatever went wrong, so its code
    (``host_not_found``, ``timeout``, ``no_recovery``, ...) is what a reader
    can act on. The chain (``__cause__`` / ``__context__``) is searched, since
    aiohttp wraps the resolver's error in its own.
    """
    seen = 0
    item: BaseException | None = error
    while item is not None and seen < _CHAIN_LIMIT:
        if isinstance(item, socket.gaierror) and isinstance(item.errno, int):
            return _GAI_ERROR_TYPES.get(item.errno) or _GAI_NAMES.get(item.errno, "_OTHER")
        if type(item).__module__.startswith("aiodns") and item.args:
            code = item.args[0]
            if isinstance(code, int):
                return _ARES_ERROR_TYPES.get(code, f"ares_{code}")
        if isinstance(item, (TimeoutError, asyncio.TimeoutError)):
            return "timeout"
        item = item.__cause__ or item.__context__
        seen += 1
    return exception_type_name(error)


LookupListener = Callable[[DnsProbe], None]
lookup_listeners: list[LookupListener] = []
"""Called with each finished lookup (the ``dns.lookup.duration`` metric)."""

_current: ContextVar[DnsProbe | None] = ContextVar("seedance_otel_dns_probe", default=None)


def start_lookup(question: str) -> DnsProbe | None:
    """Record a lookup starting in this task/thread; ``None`` for an IP literal
    (nothing is resolved, so there is nothing to time or blame)."""
    if _is_ip_literal(question):
        return None
    probe = DnsProbe(question)
    _current.set(probe)
    return probe


@functools.lru_cache(maxsize=256)
def _is_ip_literal(host: str) -> bool:
    # Per lookup, and a process talks to few hosts: parsing each time cost
    # more than the rest of the lookup hook.
    try:
        ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return False
    return True


def lookup_at_fault(started_at: float | None) -> tuple[DnsFields | None, bool]:
    """For a connect that failed: the lookup it made (started at or after
    ``started_at``; the task's last one when ``None``), and whether the fault
    happened during that lookup."""
    probe = _current.get()
    if probe is None or (started_at is not None and probe.started_at < started_at):
        return None, False
    during, fields = probe.fault_fields()
    return fields, during
