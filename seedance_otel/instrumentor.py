"""``SeedanceInstrumentor``: the entry point ``opentelemetry-instrument`` loads.

It only adapts :func:`seedance_otel.instrument` to ``BaseInstrumentor``: the
standard keyword arguments the loader and distros pass
(``tracer_provider``, ``meter_provider``, ...) are accepted; ours are passed on.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.dependencies import (
    DependencyConflict,
    get_dependency_conflicts,
)
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from . import _api
from .package import _instruments, _instruments_any

__all__ = ["SeedanceInstrumentor"]

_logger = logging.getLogger("seedance_otel")

# Keyword arguments BaseInstrumentor users commonly pass to every instrumentor.
_OTEL_KWARGS = frozenset(
    {"tracer_provider", "meter_provider", "logger_provider", "event_logger_provider"}
)


class SeedanceInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instrument aiohttp, httpx, httpx2 and asyncio connection faults."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _check_dependency_conflicts(self) -> DependencyConflict | None:
        # One of aiohttp / httpx / httpx2 is enough (contrib's httpx instrumentor does the same).
        return get_dependency_conflicts(_instruments, _instruments_any)

    def _instrument(self, **kwargs: Any) -> None:
        # A loader or distro may pass keyword arguments meant for other
        # instrumentors; refusing them would stop every instrumentor loaded
        # after us, so unknown ones are named once and ignored.
        known = _api.option_names()
        providers = {k: v for k, v in kwargs.items() if k in _OTEL_KWARGS}
        options = {k: v for k, v in kwargs.items() if k in known}
        ignored = sorted(set(kwargs) - set(providers) - set(options))
        if ignored:
            _logger.warning("seedance_otel: ignoring unknown instrument() arguments %s", ignored)
        _api.start(options, providers)

    def _uninstrument(self, **kwargs: Any) -> None:
        _api.uninstrument()
