"""The public functions: instrument, uninstrument, snapshots, stats, flush.

Library hooks are installed through wrapt post-import hooks, so a library is
patched when the application imports it (or at once if it already did), and
a library that is not installed costs nothing. An instrumentation that fails
to install (an unsupported version, say) is skipped with one warning; the
others still work.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import wrapt

from . import _capture, _dns, _guard, _runtime
from ._config import SETTINGS, load_settings
from ._guard import report_internal_error, reset, set_strict
from ._runtime import Runtime
from ._snapshot import ResetContextSnapshot
from .instrumentation import asyncio_sockets, name_resolution, registry, ssl_alpn

__all__ = ["flush", "instrument", "peer_stats", "snapshots", "stats", "uninstrument"]

_logger = logging.getLogger("seedance_otel")
_lock = threading.RLock()
_last_runtime: Runtime | None = None
_import_hooks_registered = False

# (import name, install, uninstall) of every library instrumentation, from the
# registry: a library with import names is installed when one is imported.
_LIBRARIES: tuple[tuple[str, Callable[..., None], Callable[[], None]], ...] = tuple(
    (module, library.install, library.uninstall)
    for library in registry.LIBRARIES
    for module in library.modules
)


def _install_library(
    name: str, install: Callable[..., None], uninstall: Callable[[], None]
) -> None:
    """Install one library's hooks; on failure remove them and say so once.

    Also called from wrapt's import hook, in whatever thread imports the
    library: the lock keeps it from racing ``instrument()``/``uninstrument()``.
    """
    with _lock:
        runtime = _runtime.RUNTIME
        if runtime is None:
            return
        _install_library_locked(runtime, name, install, uninstall)


def _install_library_locked(
    runtime: Runtime, name: str, install: Callable[..., None], uninstall: Callable[[], None]
) -> None:
    try:
        install()
    except Exception as exc:
        uninstall()
        note = f"{name} is not instrumented: {type(exc).__name__}: {exc}"
        runtime.notes.append(note)
        _logger.warning("seedance_otel: %s", note)
        report_internal_error(f"install {name}")


def _register_import_hooks() -> None:
    global _import_hooks_registered  # noqa: PLW0603 - wrapt hooks cannot be unregistered
    if _import_hooks_registered:
        for name, install, uninstall in _LIBRARIES:
            if name in sys.modules:
                _install_library(name, install, uninstall)
        return
    _import_hooks_registered = True
    for name, install, uninstall in _LIBRARIES:

        def on_import(
            module: Any,
            name: str = name,
            install: Callable[..., None] = install,
            uninstall: Callable[[], None] = uninstall,
        ) -> None:
            # Runs inside the user's ``import``: must never raise.
            try:
                _install_library(name, install, uninstall)
            except Exception:
                _logger.debug("seedance_otel: import hook for %s failed", name, exc_info=True)

        wrapt.register_post_import_hook(on_import, name)


_process_hooks_registered = False


def _at_exit() -> None:
    """Interpreter exit: flush what is pending within the shutdown timeout."""
    runtime = _runtime.RUNTIME
    if runtime is not None:
        try:
            runtime.stop_shipping(runtime.settings.shutdown_timeout_s)
        except Exception:
            _logger.debug("seedance_otel: flush at exit failed", exc_info=True)


def _after_fork_in_child() -> None:
    """A forked child starts with an empty ring and, lazily, its own worker.

    The parent's snapshots stay the parent's to ship (never twice). Only locks
    are renewed and state reset here: this runs inside ``fork()``.
    """
    _guard.reset_after_fork()
    _capture.reset_after_fork()
    runtime = _runtime.RUNTIME
    if runtime is not None:
        runtime.after_fork_in_child()


def _register_process_hooks() -> None:
    global _process_hooks_registered  # noqa: PLW0603 - neither hook can be unregistered
    if _process_hooks_registered:
        return
    _process_hooks_registered = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _uninstall_everything() -> None:
    for _name, _install, uninstall in _LIBRARIES:
        uninstall()
    asyncio_sockets.uninstall()
    name_resolution.uninstall()
    ssl_alpn.uninstall()


def instrument(**options: Any) -> None:
    """Start capturing connection faults. Idempotent.

    Options (each also settable by its ``SEEDANCE_OTEL_*`` variable; see
    ``seedance_otel._config``): ``ring_size``, ``strict``, ``exporter``,
    ``file``, ``batch_size``, ``export_interval_ms``, ... An unknown option
    raises ``TypeError`` naming it.
    """
    start(options, providers={})


def option_names() -> frozenset[str]:
    """Every option ``instrument()`` accepts."""
    return frozenset(setting.option for setting in SETTINGS)


def start(options: dict[str, Any], providers: dict[str, Any]) -> None:
    """``instrument()`` with the OTel providers an instrumentor was given."""
    global _last_runtime  # noqa: PLW0603
    with _lock:
        if _runtime.RUNTIME is not None:
            if options:
                _logger.warning(
                    "seedance_otel: already instrumented; options %s ignored "
                    "(call uninstrument() first to change them)",
                    sorted(options),
                )
            return
        settings = load_settings().with_options(options)
        if not settings.enabled:
            _logger.info(
                "seedance_otel: disabled (SEEDANCE_OTEL_ENABLED=false); not instrumenting"
            )
            return
        set_strict(settings.strict)
        reset()
        runtime = Runtime(settings, providers)
        _runtime.RUNTIME = _last_runtime = runtime
        try:
            ssl_alpn.install()
            name_resolution.install()
            asyncio_sockets.install()
            if runtime.metrics is not None:
                _dns.lookup_listeners.append(runtime.metrics.on_dns_lookup)
            _register_import_hooks()
            runtime.start_shipping()
            _register_process_hooks()
            from .instrumentor import SeedanceInstrumentor

            # Keep BaseInstrumentor's own flag in step when instrumented from here.
            SeedanceInstrumentor()._is_instrumented_by_opentelemetry = True
        except BaseException:
            _runtime.RUNTIME = None
            _dns.lookup_listeners.clear()
            _uninstall_everything()
            raise


def uninstrument() -> None:
    """Restore every patched object and stop shipping (after a bounded flush)."""
    with _lock:
        runtime = _runtime.RUNTIME
        if runtime is None:
            return
        # Hooks first, so nothing new arrives; then a bounded flush.
        _uninstall_everything()
        _dns.lookup_listeners.clear()
        runtime.stop_shipping(runtime.settings.shutdown_timeout_s)
        _runtime.RUNTIME = None
        from .instrumentor import SeedanceInstrumentor

        # Keep BaseInstrumentor's own flag in step when uninstrumented from here.
        SeedanceInstrumentor()._is_instrumented_by_opentelemetry = False


def snapshots() -> list[ResetContextSnapshot]:
    """The ring's current contents, oldest first (empty if never instrumented)."""
    runtime = _runtime.RUNTIME or _last_runtime
    return runtime.ring.contents() if runtime is not None else []


def stats() -> dict[str, int]:
    """Counters; ``captured == exported + dropped + export_failed + pending`` always."""
    runtime = _runtime.RUNTIME or _last_runtime
    if runtime is None:
        return {"captured": 0, "exported": 0, "dropped": 0, "export_failed": 0, "pending": 0}
    return runtime.stats()


def peer_stats() -> dict[tuple[str, int], dict[str, Any]]:
    """Per-peer keep-alive evidence: successful-reuse idle times, idle closes."""
    runtime = _runtime.RUNTIME or _last_runtime
    return runtime.peer_stats() if runtime is not None else {}


def flush(timeout_s: float = 5.0) -> bool:
    """Hand everything captured so far to the exporter; ``False`` at the deadline."""
    runtime = _runtime.RUNTIME or _last_runtime
    if runtime is None:
        return True
    return runtime.flush(timeout_s)
