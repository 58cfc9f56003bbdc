"""``import seedance_otel.auto`` as the first line of a script turns everything on.

It does what ``opentelemetry-instrument`` does, through the same public entry
point, :func:`opentelemetry.instrumentation.auto_instrumentation.initialize`:
the distro (``opentelemetry-distro``, a dependency, or another one installed),
the SDK configurator reading every ``OTEL_*`` variable (``OTEL_TRACES_EXPORTER``,
``OTEL_METRICS_EXPORTER``, ``OTEL_LOGS_EXPORTER``, exporters registered by entry
point, protocols, the resource), then every installed instrumentor, ours
(``SeedanceInstrumentor``) and the contrib ones for the libraries we
instrument included, each skipped when named in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
(``*`` skips them all). Nothing is configured by hand here, so whatever works
under ``opentelemetry-instrument`` works the same way.

When the application configured OpenTelemetry itself before this import (a
tracer provider is set), the SDK set-up is left alone: only the
instrumentations are enabled, honouring the same disabled list.

``SEEDANCE_OTEL_ENABLED=false`` turns all of it off. Nothing here raises into
the application's import: a step that fails is logged and skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os

from opentelemetry import trace

from ._api import instrument
from ._config import load_settings
from .instrumentation.registry import LIBRARIES

__all__: list[str] = []

_logger = logging.getLogger("seedance_otel")

DISABLED_VARIABLE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
ENTRY_POINT_NAME = "seedance"
"""Our name in the ``opentelemetry_instrumentor`` entry-point group."""


def disabled_instrumentations() -> set[str]:
    """The entry-point names ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` lists (``*``: all)."""
    raw = os.environ.get(DISABLED_VARIABLE, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _is_disabled(name: str, disabled: set[str]) -> bool:
    return "*" in disabled or name in disabled


def _sdk_configured_by_application() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _initialize() -> None:
    """The distro, the configurator and every instrumentor, as ``opentelemetry-instrument``."""
    from opentelemetry.instrumentation.auto_instrumentation import initialize

    initialize()


def _enable_instrumentations() -> None:
    """The application set up its SDK: enable the instrumentations only."""
    disabled = disabled_instrumentations()
    for library in LIBRARIES:
        contrib = library.contrib
        if contrib is None or _is_disabled(contrib.entry_point, disabled):
            continue
        if importlib.util.find_spec(contrib.instruments) is None:
            continue
        try:
            module = importlib.import_module(contrib.module)
        except ImportError:
            continue
        instrumentor = getattr(module, contrib.class_name)()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    if not _is_disabled(ENTRY_POINT_NAME, disabled):
        instrument()


def _enable() -> None:
    if not load_settings().enabled:
        return
    step = _enable_instrumentations if _sdk_configured_by_application() else _initialize
    try:
        step()
    except Exception:
        _logger.warning("seedance_otel.auto: %s failed", step.__name__, exc_info=True)


_enable()
