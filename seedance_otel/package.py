"""Libraries we instrument (any one of them is enough), for ``opentelemetry-instrument``.

Repeated in ``pyproject.toml`` under the ``instruments-any`` extra, which is
what the auto-instrumentation loader reads.
"""

_instruments = ()
_instruments_any = ("aiohttp >= 3.10, < 4", "httpx >= 0.27, < 1", "httpx2 >= 2, < 3")

_supports_metrics = True
