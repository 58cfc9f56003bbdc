"""What ``opentelemetry-instrument``'s loader checks before loading us: nothing.

Plain asyncio connections (Redis, databases, websockets) are instrumented with
neither aiohttp nor httpx installed, so neither can be a requirement: a
distribution whose ``instruments-any`` extra is unmet is skipped by the
loader, and that coverage would be unreachable. aiohttp (3.10+), httpx
(0.27+, httpcore 1.x) and httpx2 (2.x, httpcore2) are hooked when they are
imported; ``pyproject.toml`` declares no ``instruments`` / ``instruments-any``
extra, for the same reason.
"""

_instruments: tuple[str, ...] = ()
_instruments_any: tuple[str, ...] = ()

_supports_metrics = True
