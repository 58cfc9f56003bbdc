"""``SeedanceInstrumentor`` and the instrumentation's lifecycle: start, stop, fork, exit.

This module owns the lifecycle; ``seedance_otel.instrument()`` and
``opentelemetry-instrument`` (through the entry point) both come here.
Libraries come from the registry: the ones in the standard library are hooked
at once, the others through wrapt post-import hooks, so a library is patched
when the application imports it (or at once if it already did), and a library
that is not installed costs nothing. An instrumentation that fails to install
(an unsupported version, say) is skipped with one warning; the others still
work.

``BaseInstrumentor``'s own "instrumented" flag is read from the runtime, so it
cannot drift from the truth whichever way instrumentation was started.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.dependencies import DependencyConflict
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from . import _capture, _dns, _guard, _runtime
from ._config import SETTINGS, load_settings
from ._guard import report_internal_error, reset, set_strict
from ._library import Library
from ._runtime import Runtime
from .instrumentation.registry import LIBRARIES, SUPPORT_HOOKS

__all__ = ["SeedanceInstrumentor", "option_names", "start", "stop"]

_logger = logging.getLogger("seedance_otel")
_lock = threading.RLock()
_import_hooks_registered = False
_process_hooks_registered = False

# Keyword arguments BaseInstrumentor users commonly pass to every instrumentor.
_OTEL_KWARGS = frozenset(
    {"tracer_provider", "meter_provider", "logger_provider", "event_logger_provider"}
)


def option_names() -> frozenset[str]:
    """Every option ``instrument()`` accepts."""
    return frozenset(setting.option for setting in SETTINGS)


# -- libraries ----------------------------------------------------------------------


def _install_library(library: Library) -> None:
    """Install one library's hooks; on failure remove them and say so once.

    Also called from wrapt's import hook, in whatever thread imports the
    library: the lock keeps it from racing ``start()``/``stop()``.
    """
    with _lock:
        runtime = _runtime.RUNTIME
        if runtime is None:
            return
        try:
            library.install()
        except Exception as exc:
            library.uninstall()
            note = f"{library.name} is not instrumented: {type(exc).__name__}: {exc}"
            runtime.notes.append(note)
            _logger.warning("seedance_otel: %s", note)
            report_internal_error(f"install {library.name}")


def _on_import(library: Library) -> Any:
    def on_import(module: Any) -> None:
        # Runs inside the user's ``import``: must never raise.
        try:
            _install_library(library)
        except Exception:
            _logger.debug("seedance_otel: import hook for %s failed", library.name, exc_info=True)

    return on_import


def _install_libraries() -> None:
    """Hook the standard library's users now, the others on import."""
    global _import_hooks_registered  # noqa: PLW0603 - wrapt hooks cannot be unregistered
    for library in LIBRARIES:
        if not library.modules:
            library.install()  # the standard library: failing here fails instrument()
    if _import_hooks_registered:
        # The hooks fire once per import: libraries imported meanwhile need us now.
        for library in LIBRARIES:
            if any(name in sys.modules for name in library.modules):
                _install_library(library)
        return
    _import_hooks_registered = True
    for library in LIBRARIES:
        for name in library.modules:
            wrapt.register_post_import_hook(_on_import(library), name)


def _uninstall_everything() -> None:
    for library in reversed(LIBRARIES):
        library.uninstall()
    for _name, _install, uninstall in reversed(SUPPORT_HOOKS):
        uninstall()


# -- process ------------------------------------------------------------------------


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


_exit_finalizer_pid: int | None = None


class _AfterForkToken:
    """What ``multiprocessing.util.register_after_fork`` holds (weakly) for us."""


_AFTER_FORK_TOKEN = _AfterForkToken()


def _register_multiprocessing_exit_flush() -> None:
    """In a multiprocessing child: have multiprocessing's exit finalizers flush us.

    Children started by ``fork`` or ``forkserver`` end with ``os._exit`` after
    running ``multiprocessing.util._exit_function``, so ``atexit`` never runs
    there, but finalizers registered with an exit priority do. Registered once
    per process, and only in a multiprocessing child (the main process has
    ``atexit``). A child that never captured anything has no shipper: the flush
    is then a no-op.
    """
    global _exit_finalizer_pid  # noqa: PLW0603 - one finalizer per process
    util = sys.modules.get("multiprocessing.util")
    process = sys.modules.get("multiprocessing.process")
    if util is None or process is None or _exit_finalizer_pid == os.getpid():
        return
    if process.parent_process() is None:
        return
    _exit_finalizer_pid = os.getpid()
    util.Finalize(None, _at_exit, exitpriority=10)


def _on_multiprocessing_import(module: Any) -> None:
    # A forked child's finalizers are cleared when its Process starts
    # (``BaseProcess._after_fork``); its after-fork callbacks run after that.
    try:
        module.register_after_fork(
            _AFTER_FORK_TOKEN, lambda _token: _register_multiprocessing_exit_flush()
        )
    except Exception:
        _logger.debug("seedance_otel: cannot hook multiprocessing exit", exc_info=True)


def _register_process_hooks() -> None:
    global _process_hooks_registered  # noqa: PLW0603 - neither hook can be unregistered
    _register_multiprocessing_exit_flush()  # instrumented inside a child (spawn, forkserver)
    if _process_hooks_registered:
        return
    _process_hooks_registered = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
    wrapt.register_post_import_hook(_on_multiprocessing_import, "multiprocessing.util")


# -- lifecycle ----------------------------------------------------------------------


def start(options: dict[str, Any], providers: dict[str, Any]) -> None:
    """Start capturing, with the OTel providers an instrumentor was given. Idempotent."""
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
        _runtime.RUNTIME = _runtime.LAST_RUNTIME = runtime
        try:
            for _name, install, _uninstall in SUPPORT_HOOKS:
                install()
            if runtime.metrics is not None:
                _dns.lookup_listeners.append(runtime.metrics.on_dns_lookup)
            _install_libraries()
            runtime.start_shipping()
            _register_process_hooks()
        except BaseException:
            _runtime.RUNTIME = None
            _dns.lookup_listeners.clear()
            _uninstall_everything()
            raise


def stop() -> None:
    """Restore every patched object and stop shipping (after a bounded flush)."""
    with _lock:
        runtime = _runtime.RUNTIME
        if runtime is None:
            return
        # Hooks first, so nothing new arrives; then a bounded flush.
        _uninstall_everything()
        _dns.lookup_listeners.clear()
        runtime.stop_shipping(runtime.settings.shutdown_timeout_s)
        runtime.retire_metrics()
        _runtime.RUNTIME = None


class SeedanceInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instrument connection faults of every registered library.

    The standard keyword arguments the loader and distros pass
    (``tracer_provider``, ``meter_provider``, ...) are accepted; ours are
    passed on to :func:`start`.
    """

    @property
    def _is_instrumented_by_opentelemetry(self) -> bool:
        return _runtime.RUNTIME is not None

    @_is_instrumented_by_opentelemetry.setter
    def _is_instrumented_by_opentelemetry(self, value: bool) -> None:
        """BaseInstrumentor sets its flag; the runtime already says it."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _check_dependency_conflicts(self) -> DependencyConflict | None:
        # Nothing is required: plain asyncio connections are always there to
        # instrument, and every other library is hooked only if it is imported.
        return None

    def _instrument(self, **kwargs: Any) -> None:
        # A loader or distro may pass keyword arguments meant for other
        # instrumentors; refusing them would stop every instrumentor loaded
        # after us, so unknown ones are named once and ignored.
        known = option_names()
        providers = {k: v for k, v in kwargs.items() if k in _OTEL_KWARGS}
        options = {k: v for k, v in kwargs.items() if k in known}
        ignored = sorted(set(kwargs) - set(providers) - set(options))
        if ignored:
            _logger.warning("seedance_otel: ignoring unknown instrument() arguments %s", ignored)
        start(options, providers)

    def _uninstrument(self, **kwargs: Any) -> None:
        stop()
