"""httpx2 (through httpcore2 2.x), the client of the OpenAI, Anthropic and
Google GenAI SDKs: its :class:`Library`; the hooks are shared with httpx.

httpcore2 keeps httpcore's layout and the names of everything we hook, so the
hooks are :mod:`._httpcore_hooks` built for ``"httpcore2"``. What is its own
is the words: users of httpx2 mostly meet it inside an SDK, so the advice says
how to set each knob on the SDK's client (``http_client=`` for OpenAI and
Anthropic, ``HttpOptions(async_client_args=...)`` for Google GenAI), and that
the SDKs retry a failed request by themselves (two retries by default), so a
stale keep-alive shows up as latency before it shows up as errors.
"""

from __future__ import annotations

from .._library import ExceptionNames, LibraryAdvice
from ._httpcore_hooks import HttpcoreHooks

__all__ = ["LIBRARY", "install", "uninstall"]

_HOOKS = HttpcoreHooks("httpcore2")
install = _HOOKS.install
uninstall = _HOOKS.uninstall

_SDK_LIMITS = "max_connections=1000, max_keepalive_connections=100"
"""The SDKs' own ``DEFAULT_CONNECTION_LIMITS`` (openai 3, anthropic 2): passing
``limits=`` replaces them, so the advice repeats them."""


def _sdk_clients(limits: str) -> str:
    """How to give each SDK an httpx2 client with ``limits=httpx2.Limits(<limits>)``."""
    return (
        "openai.AsyncOpenAI(http_client=openai.DefaultAsyncHttpxClient(limits=L)), "
        "anthropic.AsyncAnthropic(http_client=anthropic.DefaultAsyncHttpxClient(limits=L)) "
        "(DefaultHttpxClient for the sync clients), "
        "google.genai.Client(http_options=types.HttpOptions(async_client_args={'limits': L})) "
        f"or httpx2.AsyncClient(limits=L), with L = httpx2.Limits({limits})"
    )


def _keepalive_setting(keepalive: str) -> str:
    return _sdk_clients(f"{_SDK_LIMITS}, keepalive_expiry={keepalive}")


_RETRY = (
    "the OpenAI and Anthropic SDKs already retry a request that met a reset "
    "(max_retries=2 by default, after a 0.5-8 s backoff), so users see latency, "
    "not errors, until the retries run out; plain httpx2 never retries: retry "
    "idempotent requests on httpx2.RemoteProtocolError / httpx2.ReadError."
)

LIBRARY = _HOOKS.library(
    name="httpx2",
    exceptions=ExceptionNames(
        timeout=frozenset({"httpx2.TimeoutException", "httpcore2.TimeoutException"}),
        pool_timeout=frozenset({"httpx2.PoolTimeout", "httpcore2.PoolTimeout"}),
        connect_timeout=frozenset({"httpx2.ConnectTimeout", "httpcore2.ConnectTimeout"}),
        write_timeout=frozenset({"httpx2.WriteTimeout", "httpcore2.WriteTimeout"}),
        connect_error=frozenset({"httpx2.ConnectError", "httpcore2.ConnectError"}),
        h1_parse_error=frozenset({"h11.RemoteProtocolError", "httpcore2.RemoteProtocolError"}),
    ),
    # As httpcore: anyio stops reading an idle stream, so an idle FIN is found
    # at the next checkout and its idle time is an upper bound.
    sees_idle_fin=False,
    default_keepalive_s=5.0,
    advice=LibraryAdvice(
        keepalive_setting=_keepalive_setting,
        keepalive_setting_name="keepalive_expiry",
        disable_keepalive=_sdk_clients("max_connections=1000, max_keepalive_connections=0"),
        retry_reset=_RETRY,
        retry_connect=(
            "the SDKs retry failed connects themselves (max_retries=2); for plain httpx2, "
            "httpx2.AsyncHTTPTransport(retries=3) retries failed connects."
        ),
        pool_limits=_sdk_clients("max_connections=..., max_keepalive_connections=...")
        + "; the pool wait is timeout=httpx2.Timeout(..., pool=...).",
        connect_timeout=(
            "httpx2.Timeout(..., connect=...) bounds it (the SDKs pass timeout= to their "
            "client: openai.AsyncOpenAI(timeout=httpx2.Timeout(600, connect=5)))."
        ),
        dns_timeout=(
            "httpx2.Timeout(connect=...) includes the name lookup: a lookup that hangs "
            "fails as a ConnectTimeout."
        ),
        dns_cache=(
            "httpx2 does not cache names and resolves on every new connection: run a "
            "local caching resolver, and keep connections alive longer."
        ),
        alpn_enable=(
            "pass http2=True to the httpx2 client the SDK uses "
            "(DefaultAsyncHttpxClient(http2=True); pip install 'httpx2[http2]'): it then "
            "offers h2 and http/1.1."
        ),
        alpn_user_context=(
            'call ctx.set_alpn_protocols(["h2", "http/1.1"]) on the SSLContext you pass '
            "as verify=, and use http2=True."
        ),
    ),
)
