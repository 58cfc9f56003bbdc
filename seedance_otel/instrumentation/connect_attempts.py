"""The sockets a library's connect tried, for faults that strike before any connection exists.

aiohttp connects through aiohappyeyeballs: one socket per address behind the
name, each connected with ``loop.sock_connect``, then the TLS handshake on the
one that connected. When they all fail, or the handshake does, the sockets are
closed before the library's exception reaches its hook, and the fault would
carry no peer address, local port or socket cookie.

So while a library's connect hook runs (:func:`begin` ... :func:`end`, which
mark the task's context) we wrap the selector loop's ``sock_connect`` and note each
socket as it is tried, in order: its address at once, and its local port
and cookie when the attempt ends, before anyone closes it. Happy-eyeballs
attempts run in tasks that inherit the context, so they share the list.
Outside such a hook ``sock_connect`` costs one read of the context variable
before the original runs.
uvloop's loop cannot be wrapped: there the attempts stay unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from .._connection import ConnectionFields, SocketFacts, new_connection_fields, socket_facts
from .._guard import report_internal_error
from ._patching import PatchSet, signature_is

__all__ = ["begin", "current", "end", "fields_of", "install", "uninstall"]

_patches = PatchSet("connect_attempts")
_attempts: ContextVar[list[SocketFacts] | None] = ContextVar(
    "seedance_otel_connect_attempts", default=None
)
MAX_ATTEMPTS = 16
"""A connect rarely tries more; the list is per connect, so this bounds memory."""
_NOTE = "sock_connect (note)"


begin: Callable[[list[SocketFacts]], Token[list[SocketFacts] | None]] = _attempts.set
"""``begin([])``: a library starts connecting in this context; note the sockets
it tries in that list. The ``ContextVar``'s own ``set`` (and :func:`current`
its ``get``): C calls, on every new connection."""


def end(token: Token[list[SocketFacts] | None]) -> None:
    try:
        _attempts.reset(token)
    except ValueError:  # reset from another context (cancelled across tasks)
        _attempts.set(None)


current: Callable[[], list[SocketFacts] | None] = _attempts.get
"""The sockets tried so far by the connect running in this context."""


def fields_of(attempts: list[SocketFacts] | None) -> ConnectionFields | None:
    """The connection part of a failed connect's snapshot: the last socket tried,
    and every address tried (in order, each once) when there were several."""
    if not attempts:
        return None
    last = attempts[-1]
    addresses = tuple(dict.fromkeys(a.peer_address for a in attempts if a.peer_address))
    peer_address, peer_port = last.peer()
    return new_connection_fields(
        peer_address=peer_address,
        peer_port=peer_port,
        local_port=last.local_port,
        socket_cookie=last.socket_cookie,
        peer_addresses_tried=addresses if len(addresses) > 1 else None,
    )


async def _connect_and_note(connecting: Any, sock: Any, facts: SocketFacts) -> Any:
    try:
        return await connecting
    finally:
        # ``facts`` from the socket as the attempt ends (it is still open); its
        # peer is the address it was connected to, asked of the socket only
        # when the call did not say. try/except, not ``with Guard``: two calls
        # fewer per attempt.
        try:
            socket_facts(sock, facts.peername, into=facts)
        except Exception:
            report_internal_error(_NOTE)


def _make_sock_connect(original: Any) -> Any:
    # A plain function (``replace``) with the loop's signature: every socket
    # connect in the process passes through it, and outside a library's
    # connect it only reads the context variable (a C call) and passes the
    # call on. Noting an attempt costs one Python call (the coroutine that
    # reads the socket as the attempt ends).
    if signature_is(original, ("self", "sock", "address")):

        def sock_connect(self: Any, sock: Any, address: Any) -> Any:
            attempts = _attempts.get()
            if attempts is None or not _patches.enabled or len(attempts) >= MAX_ATTEMPTS:
                return original(self, sock, address)
            try:
                facts = SocketFacts(address)
                attempts.append(facts)
            except Exception:
                report_internal_error("sock_connect")
                return original(self, sock, address)
            return _connect_and_note(original(self, sock, address), sock, facts)

        return sock_connect

    def generic_sock_connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        attempts = _attempts.get()
        if attempts is None or not _patches.enabled or len(attempts) >= MAX_ATTEMPTS:
            return original(self, *args, **kwargs)
        try:
            facts = SocketFacts(args[1] if len(args) > 1 else kwargs.get("address"))
            attempts.append(facts)
            sock = args[0] if args else kwargs.get("sock")
        except Exception:
            report_internal_error("sock_connect")
            return original(self, *args, **kwargs)
        return _connect_and_note(original(self, *args, **kwargs), sock, facts)

    return generic_sock_connect


def install() -> None:
    if _patches.count:
        return
    _patches.replace(
        asyncio.selector_events.BaseSelectorEventLoop, "sock_connect", _make_sock_connect
    )
    _patches.enabled = True


def uninstall() -> None:
    _patches.restore()
