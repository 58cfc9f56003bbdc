"""Which library owns the connection being made in this task or thread.

aiohttp and httpx make their connections through asyncio (and the sync
client through ``socket``). Their own hooks record faults with the request's
full context, so the asyncio-level hooks must stay out of their way: while
one of them connects, it marks the context, and the lower hooks neither track
the transport nor record a snapshot of their own (they still time DNS).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

from ._library import Library

__all__ = ["current", "enter", "leave"]

_owner: ContextVar[Library | None] = ContextVar("seedance_otel_connection_owner", default=None)


current: Callable[[], Library | None] = _owner.get
"""The library connecting in this context, if any. The ``ContextVar``'s own
``get``, not a function around it: the loop's hooks ask it on every call
(``PatchSet.wrap``'s ``step_aside``), and a Python function would add a
frame to each."""


enter: Callable[[Library], Token[Library | None]] = _owner.set
"""Mark this context as ``library``'s while it connects; hand the token to
:func:`leave`. The ``ContextVar``'s own ``set``: one call per new connection."""


def leave(token: Token[Library | None]) -> None:
    try:
        _owner.reset(token)
    except ValueError:  # reset from another context (cancelled across tasks)
        _owner.set(None)
