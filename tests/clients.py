"""Drive real aiohttp and httpx clients through a list of steps, the same way for each.

``run_steps(client, steps)`` runs steps such as ``("GET", url)``, ``("POST",
url)`` and ``("sleep", 0.5)`` on one client (so its pool is reused between
steps) and returns, per request step, the status code or the exception the
caller saw. ``client`` is ``"aiohttp"``, ``"httpx-async"`` or ``"httpx-sync"``,
or ``"httpx2-async"`` / ``"httpx2-sync"`` (the same code on httpx2, whose API
is httpx's).
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
import time
from typing import Any

CLIENTS = ("aiohttp", "httpx-async", "httpx-sync")
HTTPX2_CLIENTS = ("httpx2-async", "httpx2-sync")

Step = tuple[str, Any]


def run_steps(
    client: str,
    steps: list[Step],
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout_s: float = 10.0,
    http2: bool = False,
    **client_kwargs: Any,
) -> list[Any]:
    if client == "aiohttp":
        return asyncio.run(_aiohttp_steps(steps, ssl_context, timeout_s, client_kwargs))
    package, _, mode = client.partition("-")
    if package not in ("httpx", "httpx2"):
        raise ValueError(client)
    if mode == "async":
        return asyncio.run(
            _httpx_async_steps(package, steps, ssl_context, timeout_s, http2, client_kwargs)
        )
    if mode == "sync":
        return _httpx_sync_steps(package, steps, ssl_context, timeout_s, http2, client_kwargs)
    raise ValueError(client)


async def _aiohttp_steps(
    steps: list[Step], ssl_context: ssl.SSLContext | None, timeout_s: float, kwargs: Any
) -> list[Any]:
    import aiohttp

    results: list[Any] = []
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs
    ) as session:
        for verb, arg in steps:
            if verb == "sleep":
                await asyncio.sleep(arg)
                continue
            if verb == "block":  # block the event loop (a busy handler)
                time.sleep(arg)
                continue
            try:
                data = b"payload" if verb == "POST" else None
                async with session.request(verb, arg, data=data) as resp:
                    await resp.read()
                    results.append(resp.status)
            except Exception as exc:
                results.append(exc)
    return results


async def _httpx_async_steps(
    package: str,
    steps: list[Step],
    ssl_context: ssl.SSLContext | None,
    timeout_s: float,
    http2: bool,
    kwargs: Any,
) -> list[Any]:
    httpx = importlib.import_module(package)
    results: list[Any] = []
    async with httpx.AsyncClient(
        verify=ssl_context if ssl_context is not None else True,
        timeout=timeout_s,
        http2=http2,
        **kwargs,
    ) as client:
        for verb, arg in steps:
            if verb == "sleep":
                await asyncio.sleep(arg)
                continue
            if verb == "block":
                time.sleep(arg)
                continue
            try:
                content = b"payload" if verb == "POST" else None
                resp = await client.request(verb, arg, content=content)
                results.append(resp.status_code)
            except Exception as exc:
                results.append(exc)
    return results


def _httpx_sync_steps(
    package: str,
    steps: list[Step],
    ssl_context: ssl.SSLContext | None,
    timeout_s: float,
    http2: bool,
    kwargs: Any,
) -> list[Any]:
    httpx = importlib.import_module(package)
    results: list[Any] = []
    with httpx.Client(
        verify=ssl_context if ssl_context is not None else True,
        timeout=timeout_s,
        http2=http2,
        **kwargs,
    ) as client:
        for verb, arg in steps:
            if verb in ("sleep", "block"):
                time.sleep(arg)
                continue
            try:
                content = b"payload" if verb == "POST" else None
                resp = client.request(verb, arg, content=content)
                results.append(resp.status_code)
            except Exception as exc:
                results.append(exc)
    return results


def library_of(client: str) -> str:
    return client.partition("-")[0]
