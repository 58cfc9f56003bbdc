"""Which client library made a plain asyncio connection, and what that client's fix is.

A plain asyncio connection (``loop.create_connection``, ``asyncio.open_connection``)
is made by some client library: redis-py, asyncpg, websockets, nats, ... The
library is found once per connection, when it is made, from the module of the
first calling frame outside asyncio and the layers every client goes through
(:func:`creating_client`), and recorded as the snapshot's ``client_library``
(its top-level package: ``redis``, ``asyncpg``, ``websockets``).

Diagnosis picks a :class:`StreamClient` by that name (:func:`stream_client`)
to name the client as people know it and to give the setting that keeps its
connections clear of a peer's idle timeout; any other client gets a generic
line. Adding a client is one entry in :data:`KNOWN_CLIENTS`.

This module imports nothing of the package, so diagnosis may use it without
loading any hook.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from types import FrameType

__all__ = ["KNOWN_CLIENTS", "StreamClient", "creating_client", "generic_idle_fix", "stream_client"]


@dataclasses.dataclass(frozen=True, slots=True)
class StreamClient:
    """One client library that talks over plain asyncio streams."""

    package: str
    """Its top-level package: the snapshot's ``client_library``."""
    display_name: str
    """How people name it (``redis-py``)."""
    idle_fix: Callable[[str], str]
    """Given the recommended interval in seconds (formatted), the setting that
    keeps its connections from being reused after the peer's idle timeout."""
    retries_reset: str = ""
    """Whether the client retries a command that met a dead connection."""


def _redis_fix(seconds: str) -> str:
    return (
        f"redis.asyncio.Redis(health_check_interval={seconds}) (or on the ConnectionPool): "
        "below the server's `timeout`, a connection idle longer than that is checked with "
        "PING before use instead of failing the command; or set `timeout 0` (the default) "
        "in redis.conf so the server keeps idle clients."
    )


def _asyncpg_fix(seconds: str) -> str:
    return (
        f"asyncpg.create_pool(max_inactive_connection_lifetime={seconds}) (default 300 s): "
        "the pool closes connections idle longer than that before the server (or a proxy "
        "such as PgBouncer, or a load balancer) drops them."
    )


def _websockets_fix(seconds: str) -> str:
    return (
        f"websockets.connect(uri, ping_interval={seconds}) (default 20 s): a ping that often "
        "keeps the connection from ever sitting idle as long as the peer's timeout; "
        "ping_timeout bounds the wait for the pong."
    )


KNOWN_CLIENTS: tuple[StreamClient, ...] = (
    StreamClient(
        "redis",
        "redis-py",
        _redis_fix,
        retries_reset="redis-py retries a command on a new connection by default "
        "(retry=Retry(...)); with retries off the application sees "
        "ConnectionError('Connection closed by server.').",
    ),
    StreamClient("asyncpg", "asyncpg", _asyncpg_fix),
    StreamClient("websockets", "websockets", _websockets_fix),
)

_BY_PACKAGE = {client.package: client for client in KNOWN_CLIENTS}


def stream_client(package: str | None) -> StreamClient | None:
    """The known client behind a snapshot's ``client_library``, if we know it."""
    return _BY_PACKAGE.get(package) if package else None


def generic_idle_fix(seconds: str) -> str:
    """The fix for a client we have no specific words for."""
    return (
        f"close, or ping, connections idle for more than {seconds} s (the client's keep-alive "
        "or health-check interval below the peer's idle timeout)."
    )


_PASSED_THROUGH = frozenset(
    {
        "asyncio",
        "seedance_otel",
        "wrapt",
        "contextlib",
        "functools",
        "anyio",
        "async_timeout",
        "uvloop",
    }
)
"""Packages every client calls through: the client is the first caller outside them."""

_MAX_FRAMES = 24


def creating_client(depth: int = 1) -> str | None:
    """The top-level package of the code that is making a connection right now.

    Walks at most ``_MAX_FRAMES`` calling frames from ``depth`` up (a coroutine's
    frame reaches its awaiting caller) and returns the first package not in
    :data:`_PASSED_THROUGH`: ``redis`` for ``redis.asyncio.connection``. Runs
    once per connection; ``None`` if nothing but pass-through code is found.
    """
    frame: FrameType | None
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:
        return None
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        module = frame.f_globals.get("__name__")
        if isinstance(module, str):
            top = module.partition(".")[0]
            if top not in _PASSED_THROUGH:
                return top
        frame = frame.f_back
    return None
