"""Every instrumented library, in one list: the only place that names them all.

Adding a library is one module in this package with its
:class:`~seedance_otel._library.Library` and one line here. Everything else
(classifier, capture, diagnosis, ``auto`` and the entry point) reads library
facts through this registry.
"""

from __future__ import annotations

from collections.abc import Callable

from .._library import ExceptionNames, Library
from . import (
    aiohttp_client,
    asyncio_sockets,
    httpx2_client,
    httpx_client,
    name_resolution,
    ssl_alpn,
)

__all__ = ["LIBRARIES", "SUPPORT_HOOKS", "exception_names", "library_named"]

LIBRARIES: tuple[Library, ...] = (
    aiohttp_client.LIBRARY,
    httpx_client.LIBRARY,
    httpx2_client.LIBRARY,
    asyncio_sockets.LIBRARY,
)

SUPPORT_HOOKS: tuple[tuple[str, Callable[[], None], Callable[[], None]], ...] = (
    ("ssl", ssl_alpn.install, ssl_alpn.uninstall),
    ("dns", name_resolution.install, name_resolution.uninstall),
)
"""Hooks that serve every library (ALPN offered, DNS timing): installed first,
removed last, and recording no snapshot of their own."""

_BY_NAME = {library.name: library for library in LIBRARIES}


def library_named(name: str | None) -> Library | None:
    """The description of the library a snapshot names, if we know it."""
    return _BY_NAME.get(name) if name is not None else None


def exception_names() -> ExceptionNames:
    """The classifier's view: every library's exception names together."""
    return _EXCEPTIONS


_EXCEPTIONS = ExceptionNames.merged(library.exceptions for library in LIBRARIES)
