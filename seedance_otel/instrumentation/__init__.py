"""One module per hooked library; each installs and removes only its own wrappers.

* :mod:`.ssl_alpn` - what ALPN each ``ssl.SSLContext`` offers (stdlib, always).
* :mod:`.aiohttp_client` - aiohttp connector and protocol hooks.
* :mod:`._httpcore_hooks` - httpcore connection hooks (async and sync), built
  per package: :mod:`.httpx_client` (httpcore, httpx) and
  :mod:`.httpx2_client` (httpcore2, httpx2 and the model-API SDKs).
* :mod:`.asyncio_sockets` - plain asyncio transports and name resolution.
"""
