"""Remember what ALPN each ``ssl.SSLContext`` offers.

``SSLContext`` has no getter for its ALPN list, and the list matters: the
second trap (a server that requires ``h2``) is only explained by what the
client offered. We wrap ``set_alpn_protocols`` to record the protocols on the
context, and ``SSLContext.__new__`` to record ``()`` for contexts made after
instrumentation, so "never called" is known to mean "offered nothing" (the
aiohttp-with-a-user-context case). A context made before instrumentation and
never configured since reads as ``None``: unknown, not guessed.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from .._guard import Guard
from ._patching import PatchSet

__all__ = ["alpn_offered_by", "install", "uninstall"]

_ATTRIBUTE = "_seedance_alpn_offered"
_patches = PatchSet("ssl")


def alpn_offered_by(context: Any) -> tuple[str, ...] | None:
    """The ALPN protocols ``context`` offers; ``()`` none; ``None`` unknown."""
    if context is None:
        return None
    value = getattr(context, _ATTRIBUTE, None)
    return value if isinstance(value, tuple) else None


def mark_offered(context: Any, protocols: tuple[str, ...]) -> None:
    with contextlib.suppress(AttributeError, TypeError):
        setattr(context, _ATTRIBUTE, protocols)


def _set_alpn_protocols(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    if _patches.enabled:
        with Guard("ssl.SSLContext.set_alpn_protocols"):
            protocols = args[0] if args else kwargs.get("alpn_protocols", ())
            mark_offered(instance, tuple(str(p) for p in protocols))
    return result


def _new_context(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    context = wrapped(*args, **kwargs)
    if _patches.enabled:
        with Guard("ssl.SSLContext.__new__"):
            mark_offered(context, ())
    return context


def install() -> None:
    if _patches.count:
        return
    _patches.wrap(ssl.SSLContext, "set_alpn_protocols", _set_alpn_protocols)
    _patches.wrap(ssl.SSLContext, "__new__", _new_context)
    _patches.enabled = True


def uninstall() -> None:
    _patches.restore()
