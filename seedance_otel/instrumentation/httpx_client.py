"""httpx (through httpcore 1.x): its :class:`Library`; the hooks are shared.

The hooks themselves live in :mod:`._httpcore_hooks`, written once for
httpcore and httpcore2 (httpx2's fork of it).
"""

from __future__ import annotations

from .._library import ContribInstrumentor, ExceptionNames, LibraryAdvice
from ._httpcore_hooks import HttpcoreHooks

__all__ = ["LIBRARY", "install", "uninstall"]

_HOOKS = HttpcoreHooks("httpcore")
install = _HOOKS.install
uninstall = _HOOKS.uninstall

LIBRARY = _HOOKS.library(
    name="httpx",
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
    advice=LibraryAdvice(
        keepalive_setting=lambda seconds: (
            f"httpx.AsyncClient(limits=httpx.Limits(keepalive_expiry={seconds}))"
        ),
        keepalive_setting_name="keepalive_expiry",
        disable_keepalive="httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) "
        "(or httpx.Client)",
        retry_reset="httpx never retries a request that met a reset: retry idempotent requests "
        "once on httpx.RemoteProtocolError / httpx.ReadError / httpx.WriteError, with backoff "
        "(httpx.HTTPTransport(retries=...) covers only failed connects).",
        retry_connect="httpx.AsyncHTTPTransport(retries=3) retries failed connects (only those) "
        "to ride out restarts.",
        burst_limit="limit the burst with httpx.Limits(max_connections=...).",
        pool_limits="httpx.AsyncClient(limits=httpx.Limits(max_connections=..., "
        "max_keepalive_connections=...), timeout=httpx.Timeout(..., pool=...)) (default 100 "
        "connections); close streamed responses (async with client.stream(...), await "
        "response.aclose()).",
        connect_timeout="httpx.Timeout(..., connect=...) bounds it; "
        "httpx.AsyncHTTPTransport(retries=...) retries it.",
        dns_timeout="httpx.Timeout(connect=...) includes DNS for AsyncClient: a lookup that hangs "
        "eats the connect budget. Run a local caching resolver.",
        dns_cache="httpx does not cache names and resolves on every new connection: run a local "
        "caching resolver (systemd-resolved, nscd, NodeLocal DNSCache); httpx.Client (sync) is "
        "not even bounded by its connect timeout while resolving.",
        alpn_enable="enable HTTP/2 with httpx.AsyncClient(http2=True) (or httpx.Client; pip "
        "install 'httpx[http2]'): it then offers h2 and http/1.1.",
        alpn_user_context='call ctx.set_alpn_protocols(["h2", "http/1.1"]) on the SSLContext you '
        "pass, and use httpx.AsyncClient(http2=True) (pip install 'httpx[http2]').",
        custom_ca="pass the context as httpx.AsyncClient(verify=ctx) (or httpx.Client).",
    ),
    contrib=ContribInstrumentor(
        entry_point="httpx",
        module="opentelemetry.instrumentation.httpx",
        class_name="HTTPXClientInstrumentor",
        instruments="httpx",
    ),
)
