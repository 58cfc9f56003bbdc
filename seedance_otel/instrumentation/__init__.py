"""One module per hooked library; each installs and removes only its own wrappers.

* :mod:`.ssl_alpn` - what ALPN each ``ssl.SSLContext`` offers (stdlib, always).
* :mod:`.aiohttp_client` - aiohttp connector and protocol hooks.
* :mod:`.httpx_client` - httpcore connection hooks (async and sync httpx).
* :mod:`.asyncio_sockets` - plain asyncio transports and name resolution.
"""
