"""httpx (through httpcore 1.x): its :class:`Library`; the hooks are shared.

The hooks themselves live in :mod:`._httpcore_hooks`, written once for
httpcore and httpcore2 (httpx2's fork of it).
"""

from __future__ import annotations

from .._library import ContribInstrumentor, ExceptionNames
from ._httpcore_hooks import HttpcoreHooks

__all__ = ["LIBRARY", "install", "uninstall"]

_HOOKS = HttpcoreHooks("httpcore")
install = _HOOKS.install
uninstall = _HOOKS.uninstall

LIBRARY = _HOOKS.library(
    name="httpx",
    requirement="httpx >= 0.27, < 1",
    exceptions=ExceptionNames(
        timeout=frozenset({"httpx.TimeoutException", "httpcore.TimeoutException"}),
        pool_timeout=frozenset({"httpx.PoolTimeout", "httpcore.PoolTimeout"}),
        connect_timeout=frozenset({"httpx.ConnectTimeout", "httpcore.ConnectTimeout"}),
        write_timeout=frozenset({"httpx.WriteTimeout", "httpcore.WriteTimeout"}),
        connect_error=frozenset({"httpx.ConnectError", "httpcore.ConnectError"}),
        h1_parse_error=frozenset({"h11.RemoteProtocolError", "httpcore.RemoteProtocolError"}),
    ),
    # anyio stops reading an idle stream: httpcore finds the FIN at the next
    # checkout (``is_readable``), so the idle time is an upper bound.
    sees_idle_fin=False,
    default_keepalive_s=5.0,
    contrib=ContribInstrumentor(
        "httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"
    ),
)
