"""One module per hooked library; each installs and removes only its own wrappers.

* :mod:`.ssl_alpn` - what ALPN each ``ssl.SSLContext`` offers (stdlib, always).
* :mod:`.aiohttp_client` - aiohttp connector and protocol hooks.
* :mod:`._httpcore_hooks` - httpcore connection hooks (async and sync), built
  per package: :mod:`.httpx_client` (httpcore, httpx) and
  :mod:`.httpx2_client` (httpcore2, httpx2 and the model-API SDKs).
* :mod:`.asyncio_sockets` - plain asyncio transports, tracked in exchanges;
  :mod:`.asyncio_clients` names the client library that made one.
* :mod:`.name_resolution` - every lookup made to connect (DNS timing).
* :mod:`.connect_attempts` - the sockets aiohttp tries while it connects.
* :mod:`.registry` - the list of every instrumented library's ``Library``.
"""
