"""Name resolution: time every lookup made to open a connection.

httpx (through anyio) and plain asyncio code resolve names with
``loop.getaddrinfo``; the sync httpx client (through
``socket.create_connection``) with ``socket.getaddrinfo``. Wrapping both
gives the lookup in progress when a connect fails (``dns_timeout`` instead of
a bare ``ConnectTimeout``), the ``dns.lookup.duration`` metric, and - for
plain asyncio callers only - a ``dns_timeout``/``dns_error`` snapshot when the
resolver gives up. aiohttp times its own lookups in ``_resolve_host`` (its
``ThreadedResolver`` lands here too, but is not counted twice).

Runs per lookup, not per request: pools reuse connections.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from .. import _dns, _layers, _runtime
from .._capture import FaultContext, capture
from .._classify import HookFacts
from .._dns import DnsFields
from .._guard import Guard
from .._snapshot import Phase
from . import asyncio_sockets
from ._patching import PatchSet

__all__ = ["install", "uninstall"]

_patches = PatchSet("dns")


def _host_port(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
    host = args[0] if args else kwargs.get("host")
    port = args[1] if len(args) > 1 else kwargs.get("port")
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return str(host), port


async def _loop_getaddrinfo(
    wrapped: Any, loop: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    probe = None
    owner = _layers.current()
    with Guard("loop.getaddrinfo (start)"):
        host, port = _host_port(args, kwargs)
        probe = _dns.start_lookup(host)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        if probe is not None and not isinstance(exc, asyncio.CancelledError):
            with Guard("loop.getaddrinfo (failure)"):
                # A library that times its own lookups already did.
                probe.finish(exc, record=owner is None or not owner.times_own_lookups)
                if owner is None and isinstance(exc, socket.gaierror):
                    _record_plain_asyncio_failure(exc, probe, port)
        raise
    if probe is not None:
        with Guard("loop.getaddrinfo"):
            probe.finish(record=owner is None or not owner.times_own_lookups)
    return result


def _record_plain_asyncio_failure(exc: BaseException, probe: _dns.DnsProbe, port: Any) -> None:
    if _runtime.RUNTIME is None:
        return
    capture(
        FaultContext(
            library=asyncio_sockets.LIBRARY,
            exc=exc,
            facts=HookFacts(phase=Phase.DNS.value),
            server_address=probe.question,
            server_port=port if isinstance(port, int) else None,
            dns=DnsFields(probe.question, probe.duration_s()),
        )
    )


def _socket_getaddrinfo(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if not _patches.enabled:
        return wrapped(*args, **kwargs)
    owner = _layers.current()
    if owner is None:
        # Plain socket users and asyncio's executor threads (timed by the
        # loop hook above): nothing to add.
        return wrapped(*args, **kwargs)
    probe = None
    with Guard("socket.getaddrinfo (start)"):
        host, _port = _host_port(args, kwargs)
        probe = _dns.start_lookup(host)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        if probe is not None:
            with Guard("socket.getaddrinfo (failure)"):
                probe.finish(exc)
        raise
    if probe is not None:
        with Guard("socket.getaddrinfo"):
            probe.finish()
    return result


def install() -> None:
    if _patches.count:
        return
    _patches.wrap(
        asyncio.base_events.BaseEventLoop, "getaddrinfo", _loop_getaddrinfo, while_enabled=True
    )
    _patches.wrap_module_function(socket, "getaddrinfo", _socket_getaddrinfo)
    _patches.enabled = True


def uninstall() -> None:
    _patches.restore()
